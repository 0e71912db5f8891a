//! A small W3C WebDriver client for the browser test: the commands it uses,
//! as blocking JSON requests over HTTP/1.1 to a driver (chromedriver) on
//! loopback. It replaces fantoccini, whose webdriver 0.53 dependency brought
//! a second HTTP stack (http 0.2) and an MPL-2.0 licence into the build for
//! one test.
//!
//! Commands and their JSON are those of the W3C WebDriver recommendation
//! (<https://www.w3.org/TR/webdriver2/>): "New Session", "Navigate To",
//! "Find Element", "Element Send Keys", "Element Click", "Execute Script",
//! "Take Screenshot", "Delete Session".

use std::fmt;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A command that failed: the driver's error code and message, or the
/// exchange with the driver itself.
#[derive(Debug)]
pub enum WebDriverError {
    /// The driver answered with an error (`error` is the W3C error code).
    Command {
        status: u16,
        error: String,
        message: String,
    },
    /// No usable answer: the connection, the HTTP framing or the JSON.
    Transport(String),
}

impl WebDriverError {
    /// The element was found earlier but the page has since replaced it.
    pub fn is_stale_element_reference(&self) -> bool {
        matches!(self, WebDriverError::Command { error, .. } if error == "stale element reference")
    }

    fn is_no_such_element(&self) -> bool {
        matches!(self, WebDriverError::Command { error, .. } if error == "no such element")
    }
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebDriverError::Command {
                status,
                error,
                message,
            } => write!(f, "WebDriver {status} {error}: {message}"),
            WebDriverError::Transport(why) => write!(f, "WebDriver exchange failed: {why}"),
        }
    }
}

impl std::error::Error for WebDriverError {}

impl From<std::io::Error> for WebDriverError {
    fn from(e: std::io::Error) -> Self {
        WebDriverError::Transport(e.to_string())
    }
}

/// How to find an element.
#[derive(Debug, Clone, Copy)]
pub enum Locator<'a> {
    Css(&'a str),
    XPath(&'a str),
    /// The element whose `id` attribute is this.
    Id(&'a str),
}

impl Locator<'_> {
    fn to_json(self) -> Value {
        match self {
            Locator::Css(css) => json!({"using": "css selector", "value": css}),
            Locator::XPath(xpath) => json!({"using": "xpath", "value": xpath}),
            Locator::Id(id) => {
                let id = id.replace('\\', "\\\\").replace('"', "\\\"");
                json!({"using": "css selector", "value": format!("[id=\"{id}\"]")})
            }
        }
    }
}

/// An element of the current page, by its WebDriver reference.
#[derive(Debug, Clone)]
pub struct Element(String);

/// One browser session.
#[derive(Debug)]
pub struct Session {
    port: u16,
    id: String,
}

impl Session {
    /// Starts a browser through the driver listening on `127.0.0.1:port`;
    /// `capabilities` are matched as `alwaysMatch`.
    pub fn new(port: u16, capabilities: &Value) -> Result<Self, WebDriverError> {
        let v = request(
            port,
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": capabilities}}),
        )?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Transport(format!("no sessionId in {v}")))?;
        Ok(Self {
            port,
            id: id.to_owned(),
        })
    }

    fn command(&self, method: &str, path: &str, body: &Value) -> Result<Value, WebDriverError> {
        request(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
    }

    pub fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.command("POST", "/url", &json!({"url": url})).map(drop)
    }

    pub fn find(&self, locator: Locator<'_>) -> Result<Element, WebDriverError> {
        let v = self.command("POST", "/element", &locator.to_json())?;
        v[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| WebDriverError::Transport(format!("no element reference in {v}")))
    }

    /// Finds the element, asking again every 50 ms while there is none, for
    /// at most `at_most`.
    pub fn wait_for(
        &self,
        locator: Locator<'_>,
        at_most: Duration,
    ) -> Result<Element, WebDriverError> {
        let deadline = Instant::now() + at_most;
        loop {
            match self.find(locator) {
                Err(e) if e.is_no_such_element() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                found => return found,
            }
        }
    }

    pub fn send_keys(&self, element: &Element, text: &str) -> Result<(), WebDriverError> {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            &json!({"text": text}),
        )
        .map(drop)
    }

    pub fn click(&self, element: &Element) -> Result<(), WebDriverError> {
        self.command("POST", &format!("/element/{}/click", element.0), &json!({}))
            .map(drop)
    }

    /// Runs `script` as a function body in the page and returns its value.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, WebDriverError> {
        self.command(
            "POST",
            "/execute/sync",
            &json!({"script": script, "args": args}),
        )
    }

    /// The viewport as PNG.
    pub fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let v = self.command("GET", "/screenshot", &Value::Null)?;
        let text = v
            .as_str()
            .ok_or_else(|| WebDriverError::Transport(format!("screenshot is not text: {v}")))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| WebDriverError::Transport(format!("screenshot is not base64: {e}")))
    }

    /// Ends the session, closing the browser.
    pub fn close(self) -> Result<(), WebDriverError> {
        request(
            self.port,
            "DELETE",
            &format!("/session/{}", self.id),
            &Value::Null,
        )
        .map(drop)
    }
}

/// One command: the answer's `value` on 200, its error otherwise. A `Null`
/// body sends none.
fn request(port: u16, method: &str, path: &str, body: &Value) -> Result<Value, WebDriverError> {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let (status, raw) = read_response(BufReader::new(s))?;
    let mut v: Value = serde_json::from_slice(&raw).map_err(|e| {
        WebDriverError::Transport(format!(
            "{method} {path}: answer {status} is not JSON ({e}): {}",
            String::from_utf8_lossy(&raw)
        ))
    })?;
    let value = v["value"].take();
    if status == 200 {
        return Ok(value);
    }
    Err(WebDriverError::Command {
        status,
        error: value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_owned(),
        message: value["message"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Status and body of an HTTP/1.1 response: by `Content-Length`, chunked,
/// or up to the end of the connection.
fn read_response(mut r: BufReader<TcpStream>) -> Result<(u16, Vec<u8>), WebDriverError> {
    let bad = |why: &str| WebDriverError::Transport(why.to_owned());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the response head"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((status, body))
}
