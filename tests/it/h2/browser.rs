//! A real browser over HTTP/2: headless Chromium loads a page and its 20 subresources
//! through a TLS listener (ALPN h2), and weir's access log shows `HTTP/2.0` for each.
//! Skipped when chromium is missing, except under CI=true (.ci/run installs it).

use crate::support::slow_backend::answer_heads;
use crate::support::tls::Pki;
use crate::support::Balancer;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use weir::access_log::{Format, Target};

/// Subresources of the page, as the issue asks.
const SUBRESOURCES: usize = 20;

/// The page: 20 images, and a script that writes how many loaded once the load event
/// (which waits for every image) came.
fn page() -> String {
    let images: String =
        (0..SUBRESOURCES).map(|n| format!("<img src=\"/r/{n}.svg\" class=\"sub\">")).collect();
    format!(
        "<!doctype html><html><body>{images}<script>window.onload = () => {{ \
         const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0); \
         document.body.setAttribute('data-loaded', String(ok.length)); }};</script></body></html>"
    )
}

/// A keep-alive HTTP/1.1 backend: `/` is [`page`], `/r/N.svg` a small image, anything
/// else 404.
async fn page_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let answer = |head: String| std::future::ready(Some(answer(&head)));
            tokio::spawn(answer_heads(conn, Arc::clone(&count), answer));
        }
    });
    addr
}

/// The answer to the request whose head is `head`.
fn answer(head: &str) -> String {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\"><rect \
               width=\"8\" height=\"8\"/></svg>";
    let (status, kind, body) = match head.split(' ').nth(1).unwrap_or("") {
        "/" => ("200 OK", "text/html", page()),
        p if p.starts_with("/r/") && p.ends_with(".svg") => {
            ("200 OK", "image/svg+xml", svg.to_string())
        }
        _ => ("404 Not Found", "text/plain", "no".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(super) fn have_chromium() -> bool {
    let version = std::process::Command::new("chromium").arg("--version").output();
    version.is_ok_and(|o| o.status.success())
}

/// Headless Chromium's DOM of `url` after its load (certificate errors ignored: the test
/// CA is not in its store), and its stderr; `profile` names a fresh profile directory.
pub(super) async fn dump_dom(url: &str, profile: &str) -> (String, String) {
    let profile = crate::support::process::temp_dir(profile);
    let run = tokio::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update"])
        .args(["--ignore-certificate-errors", "--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run).await.expect("chromium ends");
    let out = out.expect("run chromium");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_a_page_and_20_subresources_over_http2() {
    // Goal: the browser check. Method: weir with a TLS listener (ALPN h2 by
    // default) in front of a page backend; headless Chromium (certificate errors
    // ignored: the test CA is not in its store) dumps the DOM after the load event; the
    // page reports 20 images loaded, and the access log has the page and each image
    // once, and every line (Chromium's /favicon.ico too) is `HTTP/2.0`.
    if !have_chromium() {
        assert!(std::env::var_os("CI").is_none(), "CI=true but chromium is missing");
        return eprintln!("skipping: needs chromium");
    }
    let backend = page_backend().await;
    let pki = Pki::new("h2-browser");
    let issued = pki.server(&["localhost"], "weir");
    let log = crate::support::process::temp_path("h2-browser-access.log");
    let weir = Balancer::over(&[backend], |config| {
        super::tls_only(config, &issued);
        config.log.access = Target::Path(log.clone());
        config.log.format = Format::Combined;
    });
    let url = format!("https://localhost:{}/", weir.tls_addr().port());
    let (dom, stderr) = dump_dom(&url, "h2-browser-profile").await;
    assert!(dom.contains(&format!("data-loaded=\"{SUBRESOURCES}\"")), "{dom}\n{stderr}");
    weir.stop().await;
    let text = std::fs::read_to_string(&log).expect("access log written");
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.contains(" HTTP/2.0\" ")), "{text}");
    assert_eq!(text.matches("\"GET / HTTP/2.0\" 200 ").count(), 1, "{text}");
    for n in 0..SUBRESOURCES {
        let image = format!("\"GET /r/{n}.svg HTTP/2.0\" 200 ");
        assert_eq!(text.matches(&image).count(), 1, "{image}: {text}");
    }
    eprintln!("access log: {} lines, every one HTTP/2.0", lines.len());
}
