//! Reading request forms: `multipart/form-data` (what the CLI sends) and,
//! for the read-only endpoints, `application/x-www-form-urlencoded`. Any
//! failure answers in our error format, never the framework's.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;

use crate::{ApiError, AppState};

/// One part of a form, in the order sent.
#[derive(Debug, Clone)]
pub(crate) struct FormPart {
    pub name: String,
    /// The `filename` of a multipart part, when it has one.
    pub file_name: Option<String>,
    pub content: Bytes,
}

impl FormPart {
    /// The content as text; form values must be UTF-8.
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.content)
            .map_err(|_| ApiError::BadRequest(format!("field `{}` is not valid UTF-8", self.name)))
    }
}

/// A form read in full (within the body limit).
#[derive(Debug, Clone, Default)]
pub(crate) struct FormData {
    pub parts: Vec<FormPart>,
}

impl FormData {
    /// The value of a field that may appear at most once.
    pub fn optional(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.parts.iter().filter(|p| p.name == name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(part), None) => part.text().map(Some),
            (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
                "field `{name}` is given more than once"
            ))),
        }
    }

    /// The value of a field that must appear exactly once.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)?
            .ok_or_else(|| ApiError::BadRequest(format!("field `{name}` is missing")))
    }

    /// The sites named by every `sites` field (the original accepts several
    /// and joins them), `None` when there is no such field. Read in linear
    /// time, each name checked, at most [`cheops_model::MAX_SITES`].
    pub fn sites(&self) -> Result<Option<Vec<String>>, ApiError> {
        let mut sites: Option<cheops_model::SiteList> = None;
        for part in self.parts.iter().filter(|p| p.name == "sites") {
            sites
                .get_or_insert_with(Default::default)
                .add(part.text()?)
                .map_err(|e| ApiError::BadRequest(format!("field `sites`: {e}")))?;
        }
        Ok(sites.map(cheops_model::SiteList::into_vec))
    }
}

/// A `multipart/form-data` body, the only kind `/exec` takes (it carries
/// files).
#[derive(Debug)]
pub(crate) struct MultipartForm(pub FormData);

impl FromRequest<AppState> for MultipartForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_multipart(req, state).await.map(MultipartForm)
    }
}

/// A `multipart/form-data` or `application/x-www-form-urlencoded` body, for
/// the endpoints that take text fields only.
#[derive(Debug)]
pub(crate) struct AnyForm(pub FormData);

impl FromRequest<AppState> for AnyForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let urlencoded = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !urlencoded {
            return read_multipart(req, state).await.map(AnyForm);
        }
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge {
                        limit: state.config.body_limit,
                    }
                } else {
                    ApiError::BadRequest(format!("malformed form: {}", rejection.body_text()))
                }
            })?;
        let parts = pairs
            .into_iter()
            .map(|(name, value)| FormPart {
                name,
                file_name: None,
                content: Bytes::from(value),
            })
            .collect();
        Ok(AnyForm(FormData { parts }))
    }
}

async fn read_multipart(req: Request, state: &AppState) -> Result<FormData, ApiError> {
    let limit = state.config.body_limit;
    let mut multipart = Multipart::from_request(req, state).await.map_err(|_| {
        ApiError::bad_request("the body must be multipart/form-data, with a boundary")
    })?;
    let failed = |error: axum::extract::multipart::MultipartError| {
        if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit }
        } else {
            ApiError::BadRequest(format!("malformed multipart body: {}", error.body_text()))
        }
    };
    let mut form = FormData::default();
    while let Some(field) = multipart.next_field().await.map_err(failed)? {
        let name = match field.name() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => return Err(ApiError::bad_request("a part of the form has no name")),
        };
        let file_name = field.file_name().map(str::to_owned);
        let content = field.bytes().await.map_err(failed)?;
        form.parts.push(FormPart {
            name,
            file_name,
            content,
        });
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> FormPart {
        FormPart {
            name: name.into(),
            file_name: None,
            content: Bytes::from(value.to_owned()),
        }
    }

    #[test]
    fn sites_are_split_on_ampersands_trimmed_and_deduplicated() {
        let form = FormData {
            parts: vec![field("sites", "a&b"), field("sites", "b & c")],
        };
        assert_eq!(form.sites().unwrap().unwrap(), ["a", "b", "c"]);
        assert_eq!(FormData::default().sites().unwrap(), None);
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let form = FormData {
            parts: vec![field("command", "a"), field("command", "b")],
        };
        let err = form.required("command").unwrap_err().to_string();
        assert!(err.contains("`command`"), "{err}");
    }
}
