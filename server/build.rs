//! Rebuilds the server when the web console is built anew: `console/dist` is embedded by
//! `rust-embed` (see src/console.rs), whose macro cannot see a folder that appears later.
//! The page names its content-hashed assets, so a new page means new assets.

fn main() {
    let page = std::path::Path::new("../console/dist/index.html");
    println!("cargo:rerun-if-changed=../console/dist/index.html");
    let stamp = std::fs::metadata(page)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(|| "none".to_owned(), |d| d.as_nanos().to_string());
    println!("cargo:rustc-env=DUCTAPE_CONSOLE_BUILD={stamp}");
}
