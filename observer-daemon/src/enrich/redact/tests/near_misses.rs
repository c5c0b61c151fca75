//! Ordinary commands the rules can be sure hold no secret: they must be
//! stored exactly as run.

use super::*;

#[rustfmt::skip]
#[test]
fn ordinary_commands_stay_untouched() {
    check(&[
        unchanged(&["grep", "-p", "pattern", "file"]),
        unchanged(&["grep", "-rn", "gsk", "src/", "gsk_"]),
        unchanged(&["ls", "-u", "-la", "/tmp"]),
        unchanged(&["mysql", "-h", "db.example", "-u", "root", "-p", "app"]),
        unchanged(&["mysql", "-P", "3306", "--port=3306"]),
        unchanged(&["ssh", "-p", "22", "git@example.com"]),
        unchanged(&["docker", "run", "-p", "8080:80", "-u", "1000:1000", "img"]),
        unchanged(&["curl", "https://api.example.com/v1/models?page=2"]),
        unchanged(&["curl", "-u", "bob", "http://localhost:8080/x"]),
        unchanged(&["wget", "http://[::1]:8080/a@b"]),
        unchanged(&["echo", "gsk", "xai", "pplx", "r8", "npm_config", "pypi-simple", "SG.x"]),
        unchanged(&["pip", "install", "ya29", "--index-url", "https://pypi.org/simple"]),
        unchanged(&["tar", "-czf", "a.tgz", "-C", "/srv", "."]),
        unchanged(&["unzip", "-p", "a.zip", "f"]),
        unchanged(&["age", "-r", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "f"]),
        unchanged(&["bash", "-c", "for f in *.txt; do wc -l \"$f\"; done"]),
        unchanged(&["git", "config", "user.name", "Bob"]),
        unchanged(&["app", "--passes", "3", "--two-phase"]),
    ]);
}
