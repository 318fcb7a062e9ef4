//! `POST /exec/{id}`: reads the form, submits the operation to the node and
//! streams the sites' replies back as they come.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use cheops_model::{Operation, ResourceConfig, ShellCommand, Timestamp};
use cheops_replicator::Submission;

use crate::form::{FormData, FormPart, MultipartForm};
use crate::replies;
use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

/// The form fields of `/exec`; every other part is an attached file.
const FIELDS: [&str; 4] = ["sites", "command", "type", "config"];

/// A checked `/exec` form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecForm {
    pub sites: Vec<String>,
    pub command: String,
    pub op_type: String,
    pub config: Option<ResourceConfig>,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl ExecForm {
    pub fn parse(form: &FormData) -> Result<Self, ApiError> {
        let sites = form
            .sites()?
            .ok_or_else(|| ApiError::bad_request("field `sites` is missing"))?;
        if sites.is_empty() {
            return Err(ApiError::bad_request(
                "field `sites` names no site: give sites separated by '&'",
            ));
        }
        // Trimmed as the original does; an empty command is the node's call.
        let command = form.required("command")?.trim().to_owned();
        let op_type = form.required("type")?.trim().to_owned();
        if op_type.is_empty() {
            return Err(ApiError::bad_request("field `type` is empty"));
        }
        let config = match form.optional("config")?.map(str::trim) {
            None | Some("") => None,
            Some(json) => parse_config(json).map_err(|e| {
                ApiError::BadRequest(format!(
                    "field `config` is not a valid resource config: {e}"
                ))
            })?,
        };
        let mut files = BTreeMap::new();
        for part in form
            .parts
            .iter()
            .filter(|p| !FIELDS.contains(&p.name.as_str()))
        {
            let name = file_name(part)?;
            if files.insert(name.clone(), part.content.to_vec()).is_some() {
                return Err(ApiError::BadRequest(format!(
                    "two attached files are named {name:?}"
                )));
            }
        }
        cheops_model::check_file_names(files.keys().map(String::as_str))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(ExecForm {
            sites,
            command,
            op_type,
            config,
            files,
        })
    }
}

/// The name an attached file is stored under, which `{name}` in the command
/// refers to. The original CLI sends each file as a part whose field name
/// and filename are both that name, and the original server keys files by
/// field name; so do we, except for the generic field names `file` and
/// `files` (as `curl -F file=@a.txt` sends), where the filename is the name.
fn file_name(part: &FormPart) -> Result<String, ApiError> {
    let base = part
        .file_name
        .as_deref()
        .and_then(|f| f.rsplit(['/', '\\']).next())
        .filter(|f| !f.is_empty());
    let name = match (part.name.as_str(), base) {
        ("file" | "files", Some(base)) => base,
        (name, _) => name,
    };
    check_file_name(name)?;
    Ok(name.to_owned())
}

/// The shell backend's rule for file names, checked here so that a name it
/// would refuse is never stored.
fn check_file_name(name: &str) -> Result<(), ApiError> {
    cheops_model::check_file_name(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub(crate) async fn exec(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    MultipartForm(form): MultipartForm,
) -> Result<Response, ApiError> {
    let form = ExecForm::parse(&form)?;
    let site = state.node.site();
    if !form.sites.iter().any(|s| s == site) {
        return Err(ApiError::BadRequest(format!(
            "this node ({site}) is not one of the sites: {}",
            form.sites.join(", ")
        )));
    }
    let operation = Operation {
        op_type: form.op_type,
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        command: ShellCommand {
            command: form.command,
            files: form.files,
        },
        time: Timestamp::now(),
        pruned: false,
    };
    let request_id = operation.request_id.clone();
    let submission = Submission {
        resource_id: id.clone(),
        sites: form.sites,
        operation,
        config: form.config,
    };
    // The timeout runs from the submit: the caller waits reply_timeout in
    // all, however long the write took.
    let deadline = tokio::time::Instant::now() + state.config.reply_timeout;
    let submitted = state.node.submit(submission).await?;
    tracing::info!(resource = %id, request = %request_id, "operation submitted");
    Ok(replies::stream(submitted, deadline))
}

/// A configuration as the original wrote it: an object whose
/// `ResolutionMatrix` is a list of objects. serde alone would also take the
/// array form of each struct (`[[["set", "set", "take-one"]]]`).
fn parse_config(json: &str) -> Result<Option<ResourceConfig>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let objects = match &value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Object(config) => match config.get("ResolutionMatrix") {
            Some(serde_json::Value::Array(entries)) => entries.iter().all(|e| e.is_object()),
            Some(matrix) => matrix.is_null(),
            None => true,
        },
        _ => false,
    };
    if !objects {
        return Err("expected an object whose ResolutionMatrix is a list of objects".into());
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    fn part(name: &str, file_name: Option<&str>, value: &str) -> FormPart {
        FormPart {
            name: name.into(),
            file_name: file_name.map(Into::into),
            content: Bytes::from(value.to_owned()),
        }
    }

    fn form(parts: Vec<FormPart>) -> FormData {
        FormData { parts }
    }

    #[test]
    fn fields_are_trimmed_and_other_parts_are_files() {
        let parsed = ExecForm::parse(&form(vec![
            part("sites", None, " s1 & s2 "),
            part("command", None, " cat {a.txt} {b} \n"),
            part("type", None, " set "),
            part("a.txt", Some("a.txt"), "A"),
            part("b", None, "B"),
            part("file", Some("dir/c.txt"), "C"),
        ]))
        .unwrap();
        assert_eq!(parsed.sites, ["s1", "s2"]);
        assert_eq!(parsed.command, "cat {a.txt} {b}");
        assert_eq!(parsed.op_type, "set");
        assert_eq!(parsed.config, None);
        let names: Vec<_> = parsed.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.txt", "b", "c.txt"]);
        assert_eq!(parsed.files["a.txt"], b"A");
    }

    #[test]
    fn a_null_or_blank_config_is_no_config() {
        for config in ["null", "  "] {
            let parsed = ExecForm::parse(&form(vec![
                part("sites", None, "s1"),
                part("command", None, "x"),
                part("type", None, "t"),
                part("config", None, config),
            ]))
            .unwrap();
            assert_eq!(parsed.config, None);
        }
    }

    #[test]
    fn a_config_in_array_form_is_refused() {
        for config in [
            r#"[null]"#,
            r#"[[{"Result":"take-one"}]]"#,
            r#"{"ResolutionMatrix":[["a","b","take-one"]]}"#,
            "3",
        ] {
            let err = ExecForm::parse(&form(vec![
                part("sites", None, "s1"),
                part("command", None, "x"),
                part("type", None, "t"),
                part("config", None, config),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains("field `config`"), "{config}: {err}");
        }
    }

    #[test]
    fn unsafe_file_names_are_refused() {
        for name in ["/etc/passwd", "../x", "a//b", "a/./b"] {
            let err = ExecForm::parse(&form(vec![
                part("sites", None, "s1"),
                part("command", None, "x"),
                part("type", None, "t"),
                part(name, Some(name), "content"),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn a_file_named_as_the_directory_of_another_is_refused() {
        let err = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("command", None, "x"),
            part("type", None, "t"),
            part("a", Some("a"), "1"),
            part("a/b", Some("b"), "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"a\"") && err.contains("\"a/b\""), "{err}");
    }

    #[test]
    fn two_files_with_one_name_are_refused() {
        let err = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("command", None, "x"),
            part("type", None, "t"),
            part("a", Some("a"), "1"),
            part("file", Some("a"), "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"a\""), "{err}");
    }
}
