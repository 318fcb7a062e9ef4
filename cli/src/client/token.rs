//! The token the client sends: from `--token-file` (`CHEOPS_TOKEN_FILE`),
//! else `CHEOPS_TOKEN`; none when neither is given (a node without tokens
//! needs none).

use cheops_model::Secret;

use super::args::NodeArgs;
use super::Failure;

/// The token to send, checked before anything is sent; errors never quote
/// it.
pub(crate) fn token(args: &NodeArgs) -> Result<Option<Secret>, Failure> {
    if let Some(path) = &args.token_file {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read --token-file {shown}: {e}")))?;
        return Secret::new(&text)
            .map(Some)
            .map_err(|e| Failure::Usage(format!("--token-file {shown}: the token {e}")));
    }
    args.token
        .as_deref()
        .map(|value| {
            Secret::new(value).map_err(|e| Failure::Usage(format!("CHEOPS_TOKEN: the token {e}")))
        })
        .transpose()
}
