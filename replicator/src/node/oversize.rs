//! Replies too large for the database: their output is cut so that the
//! document fits, and the reply says so. Running the operation again would
//! produce the same output and be refused again, forever; a cut output is
//! the only way to record that it ran.

use cheops_model::ReplyDocument;
use tracing::warn;

/// What CouchDB 3 accepts by default (`max_document_size`, 8,000,000 bytes)
/// less a margin for the revision and bookkeeping CouchDB adds.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 8_000_000 - 64 * 1024;

/// The size a reply refused as too large is cut to: well under any limit a
/// database is configured with.
pub const FALLBACK_MAX_REPLY_BYTES: usize = 64 * 1024;

/// Makes `reply` take at most `limit` bytes as JSON (or as little as it
/// can, when even an empty output does not fit): first by leaving out the
/// operation it carries (which then keeps its payload in the block), then
/// by cutting its output, which then ends with a line saying how much was
/// kept, `OutputTruncated` holding the whole output's length. A reply that
/// fits is returned unchanged; cutting a reply already cut measures the
/// first whole output.
pub fn fit(mut reply: ReplyDocument, limit: usize) -> ReplyDocument {
    let mut size = json_len(&reply);
    if size <= limit {
        return reply;
    }
    if reply.operation.take().is_some() {
        warn!(resource = %reply.resource_id, request = %reply.request_id, site = %reply.site, size, limit, "reply too large to carry its operation; the operation keeps its payload in the block");
        size = json_len(&reply);
        if size <= limit {
            return reply;
        }
    }
    let total = reply.output_truncated.unwrap_or(reply.output.len() as u64);
    let output = std::mem::take(&mut reply.output);
    // The note's digits and `OutputTruncated` are counted at their widest.
    reply.output_truncated = Some(total);
    reply.output = note(total, total);
    let budget = limit.saturating_sub(json_len(&reply));
    let kept = prefix_within(&output, budget);
    warn!(resource = %reply.resource_id, request = %reply.request_id, site = %reply.site, size, limit, kept = kept.len(), "reply too large; its output is cut");
    reply.output = format!("{kept}{}", note(kept.len() as u64, total));
    reply
}

fn note(kept: u64, total: u64) -> String {
    format!("\n[cheops: output truncated, {kept} of {total} bytes kept]\n")
}

fn json_len(reply: &ReplyDocument) -> usize {
    serde_json::to_vec(reply).map_or(usize::MAX, |json| json.len())
}

/// The longest prefix of `text` whose JSON string escape takes at most
/// `budget` bytes.
fn prefix_within(text: &str, budget: usize) -> &str {
    let mut used = 0;
    for (at, c) in text.char_indices() {
        used += escaped_len(c);
        if used > budget {
            return &text[..at];
        }
    }
    text
}

/// The bytes serde_json writes for `c` inside a string.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply(output: &str) -> ReplyDocument {
        ReplyDocument {
            site: "site1".into(),
            request_id: "r".into(),
            resource_id: "res".into(),
            input: "cat big".into(),
            output: output.into(),
            ..ReplyDocument::default()
        }
    }

    #[test]
    fn a_reply_that_fits_is_left_alone() {
        let small = reply("hello\n");
        assert_eq!(fit(small.clone(), 10_000), small);
    }

    #[test]
    fn an_oversize_reply_is_cut_under_the_limit_and_says_so() {
        let output = "x".repeat(100_000);
        let cut = fit(reply(&output), 10_000);
        let size = serde_json::to_vec(&cut).unwrap().len();
        assert!(size <= 10_000, "{size} bytes");
        assert!(size > 9_000, "as much as fits is kept: {size} bytes");
        assert_eq!(cut.output_truncated, Some(100_000));
        assert!(cut.output.starts_with("xxxx"));
        assert!(
            cut.output.ends_with(" of 100000 bytes kept]\n"),
            "{}",
            &cut.output[cut.output.len() - 60..]
        );
        let json = serde_json::to_value(&cut).unwrap();
        assert_eq!(json["OutputTruncated"], 100_000);
    }

    #[test]
    fn a_carried_operation_is_left_out_before_the_output_is_cut() {
        let mut carrier = reply("small output\n");
        let mut operation = cheops_model::Operation::default();
        operation.command.command = "z".repeat(20_000);
        carrier.operation = Some(operation);
        let fitted = fit(carrier.clone(), 10_000);
        assert_eq!(fitted.operation, None);
        assert_eq!(fitted.output, carrier.output, "the output stays whole");
        assert_eq!(fit(carrier.clone(), 30_000), carrier, "it fits with it");
    }

    #[test]
    fn cutting_again_keeps_the_first_total() {
        let once = fit(reply(&"y".repeat(50_000)), 20_000);
        let twice = fit(once, 2_000);
        assert_eq!(twice.output_truncated, Some(50_000));
        assert!(serde_json::to_vec(&twice).unwrap().len() <= 2_000);
    }

    proptest! {
        #[test]
        fn any_output_fits_any_reasonable_limit(
            output in "(\\PC|[\\x00-\\x1f\"\\\\]){0,400}",
            limit in 400usize..3_000,
        ) {
            let original = reply(&output);
            let cut = fit(original.clone(), limit);
            let size = serde_json::to_vec(&cut).unwrap().len();
            prop_assert!(size <= limit, "{} > {}", size, limit);
            if cut.output_truncated.is_none() {
                prop_assert_eq!(cut, original);
            } else {
                let kept = cut.output.rsplit_once("\n[cheops: output truncated").unwrap().0;
                prop_assert!(output.starts_with(kept));
            }
        }
    }
}
