//! The command of an `/exec` or `/show` form: its `kind` (shell, http or
//! redis) and that kind's fields, checked here so that nothing a backend
//! would refuse is stored or sent on.

use std::collections::BTreeMap;

use cheops_model::{Command, HttpRequest, Kind};

use crate::form::{FormData, FormPart};
use crate::ApiError;

/// The fields every form may carry beside its command's: for a shell
/// command every other part (but a `kind` field) is an attached file.
const FIELDS: [&str; 4] = ["sites", "command", "type", "config"];

/// Whether a shell command may carry files (an operation) or not (a show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Files {
    Attached,
    Refused,
}

/// The form's command: `command` (trimmed, as the original does), `kind`,
/// and the fields of that kind.
pub(crate) fn parse(form: &FormData, files_allowed: Files) -> Result<Command, ApiError> {
    let command = form.required("command")?.trim().to_owned();
    Ok(match kind(form)? {
        Kind::Shell => Command {
            files: match files_allowed {
                Files::Attached => files(form)?,
                Files::Refused => match form.parts.iter().find(|p| !is_common(p)) {
                    Some(part) => {
                        return Err(ApiError::BadRequest(format!(
                        "a shown command takes no files: part {:?} is none of the form's fields",
                        part.name
                    )))
                    }
                    None => BTreeMap::new(),
                },
            },
            ..Command::shell(command)
        },
        Kind::Http => Command::http(http_request(form, &command)?),
        Kind::Redis => Command::redis(redis_args(form, command)?),
        Kind::Unknown => return Err(ApiError::bad_request("field `kind` is unknown")),
    })
}

/// Whether a part is the field `name` (a field carries no file name: a
/// file of that name, as the original CLI sends it, stays a file).
fn is_field(part: &FormPart, name: &str) -> bool {
    part.name == name && part.file_name.is_none()
}

/// Whether a part is one of the fields every form may carry.
fn is_common(part: &FormPart) -> bool {
    FIELDS.contains(&part.name.as_str()) || is_field(part, "kind")
}

/// The `kind` field: `shell` (the default), `http` or `redis`.
fn kind(form: &FormData) -> Result<Kind, ApiError> {
    let mut kinds = form.parts.iter().filter(|p| is_field(p, "kind"));
    let kind = match (kinds.next(), kinds.next()) {
        (None, _) => return Ok(Kind::Shell),
        (Some(part), None) => part.text()?.trim(),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "field `kind` is given more than once",
            ))
        }
    };
    match kind {
        "" | "shell" => Ok(Kind::Shell),
        "http" => Ok(Kind::Http),
        "redis" => Ok(Kind::Redis),
        other => Err(ApiError::BadRequest(format!(
            "field `kind` is {other:?}: it is shell, http or redis"
        ))),
    }
}

/// A shell command's attached files: every part but the fields.
fn files(form: &FormData) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    let mut files = BTreeMap::new();
    for part in form.parts.iter().filter(|p| !is_common(p)) {
        let name = file_name(part)?;
        if files.insert(name.clone(), part.content.to_vec()).is_some() {
            return Err(ApiError::BadRequest(format!(
                "two attached files are named {name:?}"
            )));
        }
    }
    cheops_model::check_file_names(files.keys().map(String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(files)
}

/// The parts of a non-shell operation beside the common fields, refusing
/// any other.
fn extra_parts<'a>(
    form: &'a FormData,
    kind: &str,
    allowed: &[&str],
) -> Result<Vec<&'a FormPart>, ApiError> {
    let mut extra = Vec::new();
    for part in &form.parts {
        if is_common(part) {
            continue;
        }
        if !allowed.contains(&part.name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "a {kind} operation takes no part named {:?} (it takes {})",
                part.name,
                allowed.join(", ")
            )));
        }
        extra.push(part);
    }
    Ok(extra)
}

/// An HTTP operation: `command` is `METHOD PATH` (the path with its query
/// string), each `header` field a `Name: value`, the `body` part (a field
/// or a file) the body.
fn http_request(form: &FormData, command: &str) -> Result<HttpRequest, ApiError> {
    let (method, path) = command.split_once(' ').ok_or_else(|| {
        ApiError::bad_request(
            "an http operation's `command` is `METHOD PATH`, as `POST /api/items`",
        )
    })?;
    let (method, path) = (method.trim(), path.trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(token) {
        return Err(ApiError::BadRequest(format!(
            "{method:?} is not an HTTP method"
        )));
    }
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::BadRequest(format!(
            "the path {path:?} must start with / and hold no space: it goes after the site's application URL"
        )));
    }
    let mut request = HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        ..HttpRequest::default()
    };
    let mut bodies = 0;
    for part in extra_parts(form, "http", &["header", "body"])? {
        if part.name == "body" {
            bodies += 1;
            request.body = part.content.to_vec();
            continue;
        }
        let text = part.text()?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| ApiError::BadRequest(format!("header {text:?} is not `Name: value`")))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(token) || value.contains(['\r', '\n']) {
            return Err(ApiError::BadRequest(format!(
                "header {text:?} is not `Name: value`"
            )));
        }
        request
            .headers
            .push((name.to_owned(), value.trim().to_owned()));
    }
    if bodies > 1 {
        return Err(ApiError::bad_request(
            "field `body` is given more than once",
        ));
    }
    Ok(request)
}

/// A Redis operation: `command` is the command's name, each `arg` field an
/// argument, in order.
fn redis_args(form: &FormData, command: String) -> Result<Vec<String>, ApiError> {
    if command.is_empty() || command.contains(char::is_whitespace) {
        return Err(ApiError::BadRequest(format!(
            "a redis operation's `command` is the command's name alone, as `LSET`, not {command:?}: its arguments are `arg` fields"
        )));
    }
    let mut args = vec![command];
    for part in extra_parts(form, "redis", &["arg"])? {
        args.push(part.text()?.to_owned());
    }
    Ok(args)
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
