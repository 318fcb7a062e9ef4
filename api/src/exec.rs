//! `POST /exec/{id}`: reads the form, submits the operation to the node and
//! streams the sites' replies back as they come.

use axum::extract::State;
use axum::response::Response;
use cheops_model::{Command, Operation, ResourceConfig, Timestamp};
use cheops_replicator::Submission;

use crate::command_form::{self, Files};
use crate::form::{FormData, MultipartForm};
use crate::replies;
use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

/// A checked `/exec` form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecForm {
    pub sites: Vec<String>,
    pub command: Command,
    pub op_type: String,
    pub config: Option<ResourceConfig>,
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
        let command = command_form::parse(form, Files::Attached)?;
        Ok(ExecForm {
            sites,
            command,
            op_type,
            config,
        })
    }
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
        command: form.command,
        time: Timestamp::now(),
        // `Site`: the node's, set as it stores the operation.
        ..Operation::default()
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
    use crate::form::FormPart;
    use axum::body::Bytes;
    use cheops_model::Kind;

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
        assert_eq!(parsed.command.command, "cat {a.txt} {b}");
        assert_eq!(parsed.command.kind, Kind::Shell);
        assert_eq!(parsed.op_type, "set");
        assert_eq!(parsed.config, None);
        let names: Vec<_> = parsed.command.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["a.txt", "b", "c.txt"]);
        assert_eq!(parsed.command.files["a.txt"], b"A");
    }

    #[test]
    fn an_http_operation_reads_its_request_and_refuses_files() {
        let parsed = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("kind", None, "http"),
            part("command", None, "POST /api/items?x=1"),
            part("type", None, "add"),
            part("header", None, "Content-Type: application/json"),
            part("body", Some("item.json"), "{\"n\": 1}"),
        ]))
        .unwrap();
        let request = parsed.command.http.expect("a request");
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/api/items?x=1")
        );
        assert_eq!(
            request.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(request.body, b"{\"n\": 1}");
        for (extra, why) in [
            (part("a.txt", Some("a.txt"), "A"), "no part named"),
            (part("header", None, "no colon"), "Name: value"),
            (part("header", None, "X: a\r\nY: b"), "Name: value"),
        ] {
            let error = ExecForm::parse(&form(vec![
                part("sites", None, "s1"),
                part("kind", None, "http"),
                part("command", None, "GET /"),
                part("type", None, "t"),
                extra,
            ]))
            .unwrap_err()
            .to_string();
            assert!(error.contains(why), "{error}");
        }
        for command in ["GET", "GET http://elsewhere/", "G=T /", "GET /a b"] {
            let refused = ExecForm::parse(&form(vec![
                part("sites", None, "s1"),
                part("kind", None, "http"),
                part("command", None, command),
                part("type", None, "t"),
            ]));
            assert!(refused.is_err(), "{command}");
        }
    }

    #[test]
    fn a_redis_operation_reads_its_arguments_in_order() {
        let parsed = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("kind", None, "redis"),
            part("command", None, "LSET"),
            part("arg", None, "my list"),
            part("type", None, "set"),
            part("arg", None, "23"),
            part("arg", None, "new-val"),
        ]))
        .unwrap();
        assert_eq!(parsed.command.redis, ["LSET", "my list", "23", "new-val"]);
        assert_eq!(parsed.command.kind, Kind::Redis);
        let refused = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("kind", None, "redis"),
            part("command", None, "SET k v"),
            part("type", None, "set"),
        ]));
        assert!(refused.is_err());
        let unknown = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("kind", None, "grpc"),
            part("command", None, "x"),
            part("type", None, "t"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("shell, http or redis"), "{unknown}");
    }

    #[test]
    fn a_file_named_kind_stays_a_file() {
        let parsed = ExecForm::parse(&form(vec![
            part("sites", None, "s1"),
            part("command", None, "cat {kind}"),
            part("type", None, "t"),
            part("kind", Some("kind"), "not a field"),
        ]))
        .unwrap();
        assert_eq!(parsed.command.kind, Kind::Shell);
        assert_eq!(parsed.command.files["kind"], b"not a field");
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
