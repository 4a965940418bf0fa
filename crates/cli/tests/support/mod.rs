//! What the CLI's tests share: running `weft`, and a stand-in for weftd that answers canned
//! JSON and records what it was asked.

#![allow(dead_code)]

pub mod weftd;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path with its query.
    pub path: String,
    pub auth: Option<String>,
    pub body: String,
}

type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// An HTTP server on a free local port, one request per connection.
pub struct FakeApi {
    pub url: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl FakeApi {
    pub fn start(handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                log.lock().unwrap().push(request.clone());
                let (code, body) = handler(&request);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeApi { url, seen }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// `METHOD path` of every request so far.
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0;
    let mut auth = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => auth = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        auth,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The envelope of a success holding `items` of `resource`.
pub fn success(resource: &str, items: serde_json::Value) -> (u16, String) {
    let body = serde_json::json!({
        "status": "success", "data": { resource: items }, "op_time_us": 1
    });
    (200, body.to_string())
}

/// The envelope of a refusal.
pub fn refusal(code: u16, message: &str) -> (u16, String) {
    let body = serde_json::json!({
        "status": "error", "message": message, "errors": [{"status": code}], "op_time_us": 1
    });
    (code, body.to_string())
}

/// What `weft` printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn weft_binary() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

/// `weft` with a config directory of the test's own and none of the caller's settings.
pub fn weft_command(mut cmd: Command, config_home: &Path) -> Command {
    cmd.env("XDG_CONFIG_HOME", config_home)
        .env_remove("WEFT_URL")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_PROFILE")
        .stdin(Stdio::null());
    cmd
}

/// Runs `weft args`, with `stdin` as its standard input when given.
pub fn run(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Run {
    cmd.args(args);
    let Some(input) = stdin else {
        return cmd.output().expect("weft runs").into();
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("weft runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}
