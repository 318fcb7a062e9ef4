//! A resource's configuration: the resolution matrix that tells how two
//! operation types combine.

use serde::{Deserialize, Serialize};

/// Per-resource settings, normally sent when the resource is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceConfig {
    #[serde(rename = "ResolutionMatrix", with = "crate::nullable")]
    pub resolution_matrix: Vec<Resolution>,
}

impl ResourceConfig {
    /// True when no pair is configured: every pair then behaves as
    /// take-both-any-order, and a merge prefers any non-empty config.
    pub fn is_empty(&self) -> bool {
        self.resolution_matrix.is_empty()
    }

    /// Whether `other` combines every pair of types as this one does (the
    /// same rules, however written).
    pub fn same_rules(&self, other: &ResourceConfig) -> bool {
        self.resolution_matrix
            .iter()
            .chain(&other.resolution_matrix)
            .all(|r| self.lookup(&r.before, &r.after) == other.lookup(&r.before, &r.after))
    }

    /// The result configured for an operation of type `before` followed by
    /// one of type `after`; the first matching entry wins, as in the original.
    pub fn lookup(&self, before: &str, after: &str) -> Option<ResolutionResult> {
        self.resolution_matrix
            .iter()
            .find(|r| r.before == before && r.after == after)
            .map(|r| r.result)
    }
}

/// One entry of the matrix: how an operation of type `before` and a later
/// (or concurrent) one of type `after` combine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    #[serde(rename = "Before", default)]
    pub before: String,
    #[serde(rename = "After", default)]
    pub after: String,
    #[serde(rename = "Result")]
    pub result: ResolutionResult,
}

/// How two operations combine. A pair absent from the matrix behaves as
/// [`ResolutionResult::TakeBothAnyOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolutionResult {
    /// The later operation replaces the earlier one (and everything before it).
    TakeOne,
    /// Both stay and commute.
    TakeBothAnyOrder,
    /// Both stay, the earlier one first.
    TakeBothKeepOrder,
    /// Both stay, the later one first: it resets the state the earlier one
    /// builds on, so the block restarts from it.
    TakeBothReverseOrder,
}

impl ResolutionResult {
    pub const ALL: [ResolutionResult; 4] = [
        ResolutionResult::TakeOne,
        ResolutionResult::TakeBothAnyOrder,
        ResolutionResult::TakeBothKeepOrder,
        ResolutionResult::TakeBothReverseOrder,
    ];

    /// The value stored in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionResult::TakeOne => "take-one",
            ResolutionResult::TakeBothAnyOrder => "take-both-any-order",
            ResolutionResult::TakeBothKeepOrder => "take-both-keep-order",
            ResolutionResult::TakeBothReverseOrder => "take-both-reverse-order",
        }
    }
}

impl std::fmt::Display for ResolutionResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ResolutionResult {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown resolution result {s:?}: expected one of take-one, \
                     take-both-any-order, take-both-keep-order, take-both-reverse-order"
                )
            })
    }
}

impl Serialize for ResolutionResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResolutionResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_result_is_an_error_naming_the_value() {
        let err = serde_json::from_str::<ResourceConfig>(
            r#"{"ResolutionMatrix":[{"Before":"a","After":"b","Result":"take-two"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"take-two\""), "{err}");
        assert!(err.contains("take-both-keep-order"), "{err}");
    }

    #[test]
    fn missing_result_is_an_error() {
        let err = serde_json::from_str::<ResourceConfig>(
            r#"{"ResolutionMatrix":[{"Before":"a","After":"b"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Result"), "{err}");
    }

    #[test]
    fn lookup_takes_the_first_matching_entry() {
        let config: ResourceConfig = serde_json::from_str(
            r#"{"ResolutionMatrix":[
                {"Before":"set","After":"inc","Result":"take-both-keep-order"},
                {"Before":"set","After":"inc","Result":"take-one"}]}"#,
        )
        .unwrap();
        assert_eq!(
            config.lookup("set", "inc"),
            Some(ResolutionResult::TakeBothKeepOrder)
        );
        assert_eq!(config.lookup("inc", "set"), None);
    }

    #[test]
    fn empty_matrix_is_written_as_null() {
        let json = serde_json::to_string(&ResourceConfig::default()).unwrap();
        assert_eq!(json, r#"{"ResolutionMatrix":null}"#);
    }
}
