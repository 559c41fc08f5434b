//! Puts the commit the binary was built from into `ductape --version`: `DUCTAPE_COMMIT` if
//! set, else git's HEAD, else "unknown" (e.g. from a source package).
fn main() {
    println!("cargo:rerun-if-env-changed=DUCTAPE_COMMIT");
    // A build without the git directory (a container build) may pass it in.
    if let Some(commit) = std::env::var("DUCTAPE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        println!("cargo:rustc-env=DUCTAPE_COMMIT={}", commit.trim());
        return;
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DUCTAPE_COMMIT={commit}");
    // A new commit changes HEAD (or the branch it names).
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
