//! A blocking client of weftd's API: bearer token, the one envelope, and failures sorted into
//! refusals (weftd said no) and unreachability (nothing answered).

use std::time::Duration;

use serde_json::Value;

use crate::config::Settings;
use crate::error::{Failure, Result};

/// How long connecting may take before weftd counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ordinary request may take; a create that boots a guest under emulation is
/// the slowest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Client {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// An answer as it came: its HTTP code and its body (JSON, or the text when it is not).
#[derive(Debug)]
pub struct Answer {
    pub http: u16,
    pub body: Value,
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        Client {
            url: settings.url.clone(),
            token: settings.token.clone(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .build(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request and returns whatever answered, refusals included. Only a failure to
    /// reach weftd is an error here.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Answer> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .timeout(timeout.unwrap_or(REQUEST_TIMEOUT));
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => req
                .set("Content-Type", "application/json")
                .send_string(body),
            None => req.call(),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => {
                return Err(Failure::Unreachable {
                    url: self.url.clone(),
                    detail: transport_detail(&t),
                })
            }
        };
        let http = resp.status();
        let text = resp.into_string().map_err(|e| Failure::Unreachable {
            url: self.url.clone(),
            detail: format!("the answer broke off: {e}"),
        })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { http, body })
    }

    /// Sends a request whose answer must be a success; a refusal becomes `Failure::Refused`
    /// with weftd's own message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call_with_timeout(method, path, body, None)
    }

    pub fn call_with_timeout(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let body = body.map(Value::to_string);
        let answer = self.send(method, path, body.as_deref(), timeout)?;
        answer.into_success()
    }

    /// The items of a successful answer.
    pub fn items(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Vec<Value>> {
        Ok(items(&self.call(method, path, body)?))
    }

    /// The one item of an answer about one object.
    pub fn item(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        one(self.items(method, path, body)?)
    }
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.http) && self.body["status"] != "error"
    }

    /// Whether the server lacks the endpoint (rather than the object): an unknown path or
    /// a method the path does not take.
    pub fn is_missing_endpoint(&self) -> bool {
        self.http == 405
            || (self.http == 404
                && self.body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("No such endpoint")))
    }

    pub fn into_success(self) -> Result<Value> {
        if self.is_success() {
            return Ok(self.body);
        }
        Err(self.refusal())
    }

    /// weftd's message for a refused request, or what there is of one.
    pub fn refusal(&self) -> Failure {
        let message = match &self.body {
            Value::Object(map) => map
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| first_item_error(&self.body))
                .unwrap_or_else(|| format!("weftd answered HTTP {}", self.http)),
            Value::String(text) if !text.trim().is_empty() => {
                format!("weftd answered HTTP {}: {}", self.http, text.trim())
            }
            _ => format!("weftd answered HTTP {}", self.http),
        };
        Failure::Refused {
            http: self.http,
            message,
        }
    }
}

/// What went wrong on the way, without the URL (the message names weftd's address already).
fn transport_detail(t: &ureq::Transport) -> String {
    use std::error::Error as _;
    let mut cause = t.source();
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    innermost
        .or_else(|| t.message().map(str::to_string))
        .unwrap_or_else(|| t.kind().to_string())
}

fn first_item_error(body: &Value) -> Option<String> {
    items(body)
        .iter()
        .find_map(|i| i["message"].as_str().map(str::to_string))
}

/// The items in an answer's `data`: the array named after the resource (`instances`,
/// `service_groups`, ...), whatever its name.
pub fn items(body: &Value) -> Vec<Value> {
    body["data"]
        .as_object()
        .and_then(|data| data.values().find_map(Value::as_array))
        .cloned()
        .unwrap_or_default()
}

fn one(mut items: Vec<Value>) -> Result<Value> {
    match items.len() {
        1 => Ok(items.remove(0)),
        n => Err(Failure::other(format!(
            "weftd answered with {n} items where one was expected"
        ))),
    }
}

/// Splits items of a call on several objects into the successes and the failures (as
/// `"<name>: <message>"`).
pub fn partition(items: Vec<Value>) -> (Vec<Value>, Vec<String>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for item in items {
        if item["status"] == "error" {
            let who = item["name"]
                .as_str()
                .or_else(|| item["uuid"].as_str())
                .unwrap_or("?");
            let why = item["message"].as_str().unwrap_or("failed");
            failed.push(format!("{who}: {why}"));
        } else {
            ok.push(item);
        }
    }
    (ok, failed)
}

/// Whether `id` is a uuid (else it is a name): the batch forms name objects either way.
pub fn looks_like_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `{"uuid": id}` or `{"name": id}`.
pub fn reference(id: &str) -> Value {
    if looks_like_uuid(id) {
        serde_json::json!({ "uuid": id })
    } else {
        serde_json::json!({ "name": id })
    }
}

/// Escapes a name or uuid for a URL path.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_of_any_resource() {
        let body = json!({"status": "success", "data": {"instances": [{"name": "a"}]}});
        assert_eq!(items(&body), vec![json!({"name": "a"})]);
        let body = json!({"status": "success", "data": {"service_groups": [{"name": "g"}]}});
        assert_eq!(items(&body)[0]["name"], "g");
        assert!(items(&json!({"status": "success"})).is_empty());
    }

    #[test]
    fn refusals_carry_the_message() {
        let answer = Answer {
            http: 400,
            body: json!({"status": "error", "message": "Unknown member 'mtu'", "errors": [{"status": 400}]}),
        };
        assert_eq!(
            answer.into_success().unwrap_err(),
            Failure::Refused {
                http: 400,
                message: "Unknown member 'mtu'".into()
            }
        );
        let bare = Answer {
            http: 405,
            body: Value::String(String::new()),
        };
        assert!(bare.is_missing_endpoint());
        assert_eq!(bare.refusal().to_string(), "weftd answered HTTP 405");
        let unknown_object = Answer {
            http: 404,
            body: json!({"status": "error", "message": "No instance 'x'"}),
        };
        assert!(!unknown_object.is_missing_endpoint());
        let all_failed = Answer {
            http: 200,
            body: json!({"status": "error", "data": {"instances": [{"status": "error", "message": "busy"}]}}),
        };
        assert_eq!(all_failed.into_success().unwrap_err().to_string(), "busy");
    }

    #[test]
    fn references() {
        assert_eq!(
            reference("4b4c0f5e-3c1e-4a53-9d1a-0123456789ab"),
            json!({"uuid": "4b4c0f5e-3c1e-4a53-9d1a-0123456789ab"})
        );
        assert_eq!(reference("web"), json!({"name": "web"}));
        assert_eq!(reference("4b4c0f5e-web"), json!({"name": "4b4c0f5e-web"}));
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn partition_items() {
        let (ok, failed) = partition(vec![
            json!({"status": "success", "name": "a"}),
            json!({"status": "error", "name": "b", "message": "No instance 'b'"}),
        ]);
        assert_eq!(ok.len(), 1);
        assert_eq!(failed, vec!["b: No instance 'b'".to_string()]);
    }
}
