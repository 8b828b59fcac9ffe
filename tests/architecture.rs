//! The house's rule, checked on the source: rooms import downwards only, and each outside
//! library stays in the room that wraps it (ARCHITECTURE.md, "Rooms").
//!
//! Floors, from the bottom: `domain` and `metrics`; `config`; `chain`, `store` and `bus` (side by
//! side: none of them imports another); `actors`; `streams`; `http`; `app`; `testkit`; `demo`;
//! the crate root (`lib.rs`) and `main.rs`. A file may name its own room and any room on a lower floor, never a
//! room on its own floor or above. Test modules inside a file count too: a lower room's tests
//! that need a higher room belong in `tests/`.
//!
//! The testkit (the dev chain the demo and the tests drive) names no room of the crate but
//! `domain`, so that the tests that compare govflow with the contracts stay an independent check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The rooms, by floor.
const FLOORS: &[&[&str]] = &[
    &["domain", "metrics"],
    &["config"],
    &["chain", "store", "bus"],
    &["actors"],
    &["streams"],
    &["http"],
    &["app"],
    &["testkit"],
    &["demo"],
    &["lib", "main"],
];

/// Outside libraries and the only rooms that may name them.
const WRAPPED: &[(&str, &[&str])] = &[
    ("async_nats", &["bus"]),
    ("scylla", &["store"]),
    ("redb", &["store"]),
    ("warp", &["http"]),
    // The testkit drives a dev chain, and the demo plays its story, with ethers, as a wallet would.
    ("ethers", &["chain", "testkit", "demo"]),
    // The event bindings (`sol!`) and their types stay in the decoder.
    ("alloy_sol_types", &["streams"]),
    ("alloy_primitives", &["streams"]),
];

/// Rooms that may name only the listed rooms of the crate, whatever their floor.
const INDEPENDENT: &[(&str, &[&str])] = &[("testkit", &["domain"])];

fn floor(room: &str) -> usize {
    FLOORS.iter().position(|f| f.contains(&room)).unwrap_or_else(|| panic!("room {room:?} is on no floor: add it to FLOORS and to ARCHITECTURE.md"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The room of a file under `src/`: its first path component, without `.rs`.
fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Code without comments and string literals (so prose naming a room is not an import).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' (lifetimes have no closing quote two bytes on).
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(code: &str, at: usize) -> String {
    code[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The rooms a file names: `crate::x`, `govflow::x` and each member of `crate::{x, y::z}`.
fn rooms_named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "govflow::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(prefix) {
            let at = from + pos + prefix.len();
            from = at;
            let before = code[..from - prefix.len()].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if code[at..].starts_with('{') {
                // The top-level members of the group (nested groups belong to their member).
                let (mut depth, mut member_start) = (0usize, true);
                for (k, c) in code[at..].char_indices() {
                    match c {
                        '{' => {
                            depth += 1;
                            member_start = depth == 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => member_start = true,
                        c if member_start && (c.is_ascii_alphanumeric() || c == '_') => {
                            out.insert(ident_at(code, at + k));
                            member_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name = ident_at(code, at);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// Whether `code` uses the outside crate `krate` (`krate::` at a path's start, or `use krate`).
fn names_crate(code: &str, krate: &str) -> bool {
    let pat = format!("{krate}::");
    code.match_indices(&pat).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        // `crate::store::scylla::x` names govflow's own module, not the driver.
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    })
}

#[test]
fn rooms_import_downwards_only_and_libraries_stay_in_their_rooms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    assert!(files.len() > 30, "src/ has {} files: the walk is broken", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let room = room_of(&src, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let own = floor(&room);
        for named in rooms_named(&code) {
            let Some(their) = FLOORS.iter().position(|f| f.contains(&named.as_str())) else { continue };
            if named != room && their >= own {
                let why = if their == own { "a room on the same floor" } else { "a higher room" };
                problems.push(format!("{rel} (room {room}, floor {own}) imports {named} (floor {their}): {why}"));
            }
        }
        if let Some((_, allowed)) = INDEPENDENT.iter().find(|(r, _)| *r == room) {
            for named in rooms_named(&code) {
                if named != room && FLOORS.iter().any(|f| f.contains(&named.as_str())) && !allowed.contains(&named.as_str()) {
                    problems.push(format!("{rel} (room {room}) imports {named}: it may name only {allowed:?}, to stay independent of govflow"));
                }
            }
        }
        for (krate, rooms) in WRAPPED {
            if !rooms.contains(&room.as_str()) && names_crate(&code, krate) {
                problems.push(format!("{rel} (room {room}) uses the `{krate}` crate, which only {rooms:?} may name"));
            }
        }
    }
    assert!(problems.is_empty(), "the layering rule is broken:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must() {
    let code = code_of("use crate::{domain::U256, store::{Store, off_thread}, http::x};\nlet s = \"crate::app\";\nfoo(crate::bus::x);");
    let named = rooms_named(&code);
    assert!(named.contains("domain") && named.contains("store") && named.contains("bus"), "{named:?}");
    assert!(named.contains("http"), "members after a nested group: {named:?}");
    assert!(!named.contains("Store") && !named.contains("off_thread"), "nested members are not rooms: {named:?}");
    assert!(!named.contains("app"), "strings are not imports: {named:?}");
    assert!(!rooms_named(&code_of("// crate::http in a comment")).contains("http"), "comments are not imports");
    assert!(names_crate("use async_nats::HeaderMap;", "async_nats"));
    assert!(!names_crate("use crate::store::scylla::ScyllaStore;", "scylla"));
    assert!(names_crate("let s: scylla::client::Session;", "scylla"));
}
