//! Reading a node's `/metrics` (Prometheus text format) as a scraper does.

use std::collections::BTreeMap;

/// A series' labels, by name.
type Labels = BTreeMap<String, String>;

/// One scrape: each series' labels and value, by metric name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    series: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Scrape {
    /// Reads the text of a scrape; panics on a line that is not a sample.
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("not a value in {line:?}: {e}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.trim_end_matches('}'), line)),
                None => (series, Labels::new()),
            };
            scrape
                .series
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        scrape
    }

    /// The sum of the series of `name` that carry every label of `with`
    /// (0 when there is none).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.series
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| {
                with.iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Whether a series of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.series.contains_key(name)
    }

    /// The values of `label` among the series of `name` carrying `with`,
    /// with their sums.
    pub fn by(&self, name: &str, label: &str, with: &[(&str, &str)]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, value) in self.series.get(name).into_iter().flatten() {
            if with
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            {
                if let Some(key) = labels.get(label) {
                    *out.entry(key.clone()).or_insert(0.0) += value;
                }
            }
        }
        out
    }
}

/// `k="v",k2="v2"`, values with `\"`, `\\` and `\n` escapes.
fn labels(text: &str, line: &str) -> Labels {
    let mut labels = Labels::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label in {line:?}"),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end + 1..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_labels() {
        let scrape = Scrape::parse(
            "# HELP x_total An x.\n# TYPE x_total counter\n\
             x_total{kind=\"doc\",method=\"GET\"} 3\n\
             x_total{kind=\"doc\",method=\"PUT\"} 2\n\
             x_total{kind=\"a\\\"b\",method=\"GET\"} 1\n\
             y 7\n",
        );
        assert_eq!(scrape.sum("x_total", &[("kind", "doc")]), 5.0);
        assert_eq!(scrape.sum("x_total", &[("method", "GET")]), 4.0);
        assert_eq!(scrape.sum("x_total", &[("kind", "a\"b")]), 1.0);
        assert_eq!(scrape.sum("y", &[]), 7.0);
        assert_eq!(scrape.sum("z", &[]), 0.0);
        assert_eq!(
            scrape.by("x_total", "method", &[("kind", "doc")])["PUT"],
            2.0
        );
    }
}
