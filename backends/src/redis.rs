//! The Redis backend: an operation's command sent with RESP to this site's
//! own Redis (`--redis-backend redis://…`). OK unless Redis answers an
//! error; the output is the answer as `redis-cli` shows it on a terminal.

use std::time::Duration;

use cheops_model::Command;
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::Mutex;
use tracing::info;

use crate::output::capped;
use crate::{BackendError, CommandFuture, CommandResult, Outcome, Run};

/// Sends operations' commands to one Redis.
pub struct RedisBackend {
    client: redis::Client,
    /// Opened at the first command, and again after it broke.
    connection: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    output_limit: usize,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.write_str("RedisBackend")
    }
}

impl RedisBackend {
    /// A backend for the Redis at `url` (`redis://127.0.0.1:6379`), each
    /// command given `timeout` and its output cut at `output_limit` bytes.
    pub fn new(url: &str, timeout: Duration, output_limit: usize) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        Ok(RedisBackend {
            client,
            connection: Mutex::new(None),
            timeout,
            output_limit,
        })
    }

    async fn send(&self, command: &Command) -> Result<CommandResult, BackendError> {
        let Some((name, args)) = command.redis.split_first() else {
            return Err(BackendError::Refused(
                "a redis operation without its command".into(),
            ));
        };
        let mut cmd = redis::cmd(name);
        for arg in args {
            cmd.arg(arg);
        }
        let mut slot = self.connection.lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => {
                let opened = tokio::time::timeout(
                    self.timeout,
                    self.client.get_multiplexed_async_connection(),
                )
                .await;
                match opened {
                    Ok(Ok(connection)) => slot.insert(connection),
                    Ok(Err(error)) => return Ok(unreachable(&error.to_string())),
                    Err(_) => return Ok(unreachable("no answer in time")),
                }
            }
        };
        let answer = tokio::time::timeout(self.timeout, cmd.query_async::<Value>(connection)).await;
        let (outcome, output) = match answer {
            Ok(Ok(value)) => (Outcome::Ok, render(&value)),
            // An error Redis answered: the command ran and failed.
            Ok(Err(error))
                if error.kind() != redis::ErrorKind::IoError && error.code().is_some() =>
            {
                (
                    Outcome::Failed,
                    format!(
                        "(error) {} {}",
                        error.code().unwrap_or_default(),
                        error.detail().unwrap_or_default()
                    ),
                )
            }
            Ok(Err(error)) => {
                *slot = None;
                (
                    Outcome::Failed,
                    format!("Redis broke off (the command may have run): {error}"),
                )
            }
            Err(_) => {
                *slot = None;
                (
                    Outcome::Failed,
                    format!(
                        "Redis did not answer within {} s (the command may have run)",
                        self.timeout.as_secs_f64()
                    ),
                )
            }
        };
        info!(command = %name, ok = outcome == Outcome::Ok, "redis command sent");
        Ok(CommandResult {
            outcome,
            output: capped(output, self.output_limit),
        })
    }
}

fn unreachable(why: &str) -> CommandResult {
    CommandResult {
        outcome: Outcome::Failed,
        output: format!("cannot reach Redis: {why}"),
    }
}

impl Run for RedisBackend {
    fn run_one<'a>(&'a self, command: &'a Command) -> CommandFuture<'a> {
        Box::pin(async move {
            self.send(command)
                .await
                .unwrap_or_else(|error| CommandResult::not_run(&error))
        })
    }
}

/// `value` as `redis-cli` shows it on a terminal.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    render_into(value, "", &mut out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn render_into(value: &Value, indent: &str, out: &mut String) {
    match value {
        Value::Nil => out.push_str("(nil)"),
        Value::Int(n) => out.push_str(&format!("(integer) {n}")),
        Value::BulkString(bytes) => out.push_str(&quoted(bytes)),
        Value::SimpleString(text) => out.push_str(text),
        Value::Okay => out.push_str("OK"),
        Value::Double(x) => out.push_str(&format!("(double) {x}")),
        Value::Boolean(b) => out.push_str(&format!("({b})")),
        Value::VerbatimString { text, .. } => out.push_str(text),
        Value::BigNumber(n) => out.push_str(&format!("(big number) {n}")),
        Value::ServerError(error) => out.push_str(&format!(
            "(error) {} {}",
            error.code(),
            error.details().unwrap_or_default()
        )),
        Value::Array(items) | Value::Set(items) => render_list(items.iter(), indent, out),
        Value::Map(pairs) => {
            let flat: Vec<&Value> = pairs.iter().flat_map(|(k, v)| [k, v]).collect();
            render_list(flat.into_iter(), indent, out);
        }
        Value::Attribute { data, .. } => render_into(data, indent, out),
        Value::Push { data, .. } => render_list(data.iter(), indent, out),
    }
}

/// Numbered lines, `1) …`, nested lists indented under their number.
fn render_list<'a>(
    items: impl ExactSizeIterator<Item = &'a Value>,
    indent: &str,
    out: &mut String,
) {
    let count = items.len();
    if count == 0 {
        out.push_str("(empty array)");
        return;
    }
    let width = count.to_string().len();
    for (i, item) in items.enumerate() {
        let number = format!("{:>width$}) ", i + 1);
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(&number);
        let inner = format!("{indent}{}", " ".repeat(number.len()));
        render_into(item, &inner, out);
    }
}

/// A bulk string as `redis-cli` quotes it.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_redis_cli_shows_them() {
        assert_eq!(render(&Value::Okay), "OK\n");
        assert_eq!(render(&Value::Int(42)), "(integer) 42\n");
        assert_eq!(render(&Value::Nil), "(nil)\n");
        assert_eq!(
            render(&Value::BulkString(b"a \"b\"\n\xff".to_vec())),
            "\"a \\\"b\\\"\\n\\xff\"\n"
        );
        assert_eq!(render(&Value::Array(vec![])), "(empty array)\n");
        let nested = Value::Array(vec![
            Value::BulkString(b"x".to_vec()),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
        ]);
        assert_eq!(
            render(&nested),
            "1) \"x\"\n2) 1) (integer) 1\n   2) (integer) 2\n"
        );
    }
}
