//! Serde helpers for Go's view of empty collections: a nil slice or map is
//! written as `null`, and `null` reads back as empty.
//!
//! The original never distinguishes "empty" from "absent", so the port writes
//! every empty collection as `null`: that is what the original writes for its
//! zero values and what it reads back without surprise.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Collections that have a Go nil counterpart.
pub trait Emptiable {
    fn is_empty(&self) -> bool;
}

impl<T> Emptiable for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl<K, V> Emptiable for BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

pub fn serialize<T, S>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize + Emptiable,
    S: Serializer,
{
    if value.is_empty() {
        serializer.serialize_none()
    } else {
        value.serialize(serializer)
    }
}

pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + Default,
    D: Deserializer<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
