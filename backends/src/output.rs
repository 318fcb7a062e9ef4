//! Outputs cut to the limit every backend shares (`--command-output-limit`),
//! with the line that says so.

/// `output` cut to `limit` bytes (on a character boundary), and a line
/// saying how much was dropped.
pub fn capped(mut output: String, limit: usize) -> String {
    if output.len() <= limit {
        return output;
    }
    let mut end = limit;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = output.len() - end;
    output.truncate(end);
    end_line(&mut output);
    output.push_str(&format!(
        "[cheops: output truncated: {dropped} more bytes dropped after the first {limit} \
         (--command-output-limit)]\n"
    ));
    output
}

/// Ends `output` with a newline, unless it is empty or already does.
pub fn end_line(output: &mut String) {
    if !output.is_empty() && !output.ends_with('\n') {
        output.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_over_the_limit_is_cut_and_says_so() {
        assert_eq!(capped("short".into(), 10), "short");
        let cut = capped("é".repeat(10), 5);
        assert!(
            cut.starts_with("éé\n[cheops: output truncated: 16 more bytes"),
            "{cut}"
        );
    }
}
