//! The image configuration blob (OCI and Docker share it), read leniently: Docker writes `null`
//! for empty lists and maps, and extra fields are ignored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "drop_nulls")]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<serde_json::Value>,
}

/// Docker writes `null` for empty members; [`drop_nulls`] removes them before this is read.
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub user: String,
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: String,
    /// Docker's HEALTHCHECK (`Test`, `Interval`, ...), kept as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

/// Reads a JSON object with its `null` members removed, so they take their defaults.
fn drop_nulls<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Object(mut members)) => {
            members.retain(|_, v| !v.is_null());
            serde_json::from_value(serde_json::Value::Object(members))
                .map_err(serde::de::Error::custom)
        }
        Some(serde_json::Value::Null) | None => Ok(T::default()),
        Some(other) => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
