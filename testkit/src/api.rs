//! A small client of weftd's API that talks from inside the host namespace.

use serde_json::Value;

use crate::Netns;

#[derive(Clone)]
pub struct Api {
    ns: String,
    base: String,
    token: String,
}

impl Api {
    pub fn new(ns: &Netns, base: &str, token: &str) -> Api {
        Api {
            ns: ns.name().to_string(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// The same API with another token (or none, with "").
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// Sends a request with a raw body; returns the HTTP status and the JSON answer.
    pub fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.raw_bytes(method, path, body.map(str::as_bytes))
    }

    /// Sends a request with a body of any bytes, UTF-8 or not.
    pub fn raw_bytes(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let (method, token) = (method.to_string(), self.token.clone());
        let body = body.map(<[u8]>::to_vec);
        let ns = Netns::existing(&self.ns);
        ns.enter(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(120))
                .build();
            let mut req = agent.request(&method, &url);
            if !token.is_empty() {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
            let result = match body {
                Some(body) => req
                    .set("Content-Type", "application/json")
                    .send_bytes(&body),
                None => req.call(),
            };
            match result {
                Ok(resp) => (resp.status(), resp.into_json().unwrap_or(Value::Null)),
                Err(ureq::Error::Status(code, resp)) => {
                    (code, resp.into_json().unwrap_or(Value::Null))
                }
                Err(e) => (0, Value::String(e.to_string())),
            }
        })
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.raw("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.raw("POST", path, Some(&body.to_string()))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.raw("DELETE", path, None)
    }

    pub fn put(&self, path: &str) -> (u16, Value) {
        self.raw("PUT", path, None)
    }

    /// The whole console log of an instance, decoded.
    pub fn console(&self, id: &str) -> String {
        use base64::Engine as _;
        let (_, body) = self.get(&format!("/v1/instances/{id}/log?limit=1048576"));
        let b64 = body["data"]["instances"][0]["output"]
            .as_str()
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
