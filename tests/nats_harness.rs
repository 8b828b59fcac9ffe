//! Proves the `support::nats` harness against the real nats-server (`scripts/nats.sh install`):
//! JetStream is on, restarts keep the port and the store, parallel servers get their own ports.
//! Talks the NATS text protocol over a plain TCP socket, so nothing here depends on a client
//! library.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::nats::NatsServer;

/// A minimal NATS client: connected, INFO read.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    info: String,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut raw = Raw { reader: BufReader::new(stream), writer, info: String::new() };
        raw.info = raw.line();
        assert!(raw.info.starts_with("INFO {"), "first line is not INFO: {:?}", raw.info);
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\nPING\r\n");
        assert_eq!(raw.line(), "PONG");
        raw
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a protocol line");
        line.trim_end().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats-server");
    }

    /// Request-reply: publishes `payload` to `subject` and returns the first reply's payload.
    fn request(&mut self, subject: &str, payload: &str) -> String {
        let inbox = "_INBOX.harness";
        self.send(format!("SUB {inbox} 1\r\nUNSUB 1 1\r\nPUB {subject} {inbox} {}\r\n{payload}\r\n", payload.len()).as_bytes());
        loop {
            let line = self.line();
            if line == "PING" {
                self.send(b"PONG\r\n");
            } else if let Some(rest) = line.strip_prefix("MSG ") {
                let len: usize = rest.rsplit(' ').next().unwrap().parse().expect("MSG length");
                let mut body = vec![0u8; len + 2];
                self.reader.read_exact(&mut body).expect("read MSG payload");
                body.truncate(len);
                return String::from_utf8(body).expect("UTF-8 payload");
            } else {
                assert!(!line.starts_with("-ERR"), "nats-server: {line}");
            }
        }
    }
}

#[test]
fn start_serves_jetstream_on_loopback() {
    let nats = NatsServer::start();
    assert_ne!(nats.port(), 0);
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    assert!(nats.pid().is_some());
    assert!(nats.store_dir().is_dir());

    let mut raw = Raw::connect(nats.port());
    assert!(raw.info.contains("\"jetstream\":true"), "INFO without JetStream: {}", raw.info);
    assert!(raw.info.contains("\"version\":\"2.15.2\""), "unexpected version: {}", raw.info);
    let account = raw.request("$JS.API.INFO", "");
    assert!(account.contains("\"type\":\"io.nats.jetstream.api.v1.account_info_response\""), "{account}");
    assert!(nats.output().contains("Server is ready"), "{}", nats.output());
    assert!(nats.store_dir().join("jetstream").is_dir());
}

#[test]
fn restart_keeps_port_and_jetstream_store() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    let first_pid = nats.pid().unwrap();

    let mut raw = Raw::connect(port);
    let created = raw.request("$JS.API.STREAM.CREATE.HARNESS", r#"{"name":"HARNESS","subjects":["harness.>"],"storage":"file"}"#);
    assert!(created.contains("stream_create_response") && !created.contains("\"error\""), "{created}");
    let ack = raw.request("harness.one", "hello");
    assert!(ack.contains("\"stream\":\"HARNESS\"") && ack.contains("\"seq\":1"), "{ack}");
    drop(raw);

    // Graceful stop and start on the same port.
    nats.restart();
    assert_eq!(nats.port(), port);
    assert_ne!(nats.pid().unwrap(), first_pid);
    let info = Raw::connect(port).request("$JS.API.STREAM.INFO.HARNESS", "");
    assert!(info.contains("\"messages\":1,"), "stream lost across restart: {info}");

    // A crash (SIGKILL) and a start on the same port: what was on disk is still there.
    nats.kill();
    assert_eq!(nats.pid(), None);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers after kill");
    nats.restart();
    assert_eq!(nats.port(), port);
    let info = Raw::connect(port).request("$JS.API.STREAM.INFO.HARNESS", "");
    assert!(info.contains("\"messages\":1,"), "stream lost across kill + restart: {info}");

    nats.stop();
    assert_eq!(nats.pid(), None);
    nats.stop(); // idempotent
    assert!(nats.output().contains("restarting nats-server on port"), "{}", nats.output());
}

#[test]
fn concurrent_servers_get_their_own_ports_and_stores() {
    let a = std::thread::spawn(NatsServer::start);
    let b = std::thread::spawn(NatsServer::start);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    for nats in [&a, &b] {
        let raw = Raw::connect(nats.port());
        assert!(raw.info.contains("\"jetstream\":true"), "{}", raw.info);
    }
    let store = a.store_dir().to_path_buf();
    drop(a);
    assert!(!store.exists(), "store dir {} left behind", store.display());
}

#[tokio::test]
async fn usable_from_async_tests() {
    let nats = NatsServer::start();
    let port = nats.port();
    let info = tokio::task::spawn_blocking(move || Raw::connect(port).info).await.unwrap();
    assert!(info.contains("\"jetstream\":true"), "{info}");
}
