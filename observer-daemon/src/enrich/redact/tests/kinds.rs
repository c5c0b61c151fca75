//! One table per kind of secret that issue #16 found stored unredacted,
//! and per token shape it asked for. Each row: the argv in, the argv stored.

use super::*;

const R: &str = REDACTED;

#[rustfmt::skip] // one case per line reads as a table
#[test]
fn sshpass_password() {
    check(&[
        case(&["sshpass", "-p", "hunter2", "ssh", "host"], &["sshpass", "-p", R, "ssh", "host"]),
        case(&["sshpass", "-phunter2", "ssh", "host"], &["sshpass", "-p[REDACTED]", "ssh", "host"]),
        case(&["/usr/bin/sshpass", "-p", "hunter2", "scp", "f", "h:"], &["/usr/bin/sshpass", "-p", R, "scp", "f", "h:"]),
        // ssh's own -p is a port: the command after sshpass has its own flags.
        case(&["sudo", "sshpass", "-p", "pw", "ssh", "-p", "2222", "h"], &["sudo", "sshpass", "-p", R, "ssh", "-p", "2222", "h"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn mysql_attached_password() {
    check(&[
        case(&["mysql", "-phunter2"], &["mysql", "-p[REDACTED]"]),
        case(&["mysql", "-uroot", "-phunter2", "app"], &["mysql", "-uroot", "-p[REDACTED]", "app"]),
        case(&["mysqldump", "-h", "db", "-pS3cr3t!", "app"], &["mysqldump", "-h", "db", "-p[REDACTED]", "app"]),
        case(&["/usr/bin/mariadb", "-pabc"], &["/usr/bin/mariadb", "-p[REDACTED]"]),
        // A lone -p prompts: the next argument is not a password.
        unchanged(&["mysql", "-p", "-h", "db", "app"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn curl_user_and_password() {
    check(&[
        case(&["curl", "-u", "bob:hunter2", "https://a.example/"], &["curl", "-u", "bob:[REDACTED]", "https://a.example/"]),
        case(&["curl", "--user", "bob:hunter2", "https://a.example/"], &["curl", "--user", "bob:[REDACTED]", "https://a.example/"]),
        case(&["curl", "--user=bob:hunter2"], &["curl", "--user=bob:[REDACTED]"]),
        case(&["curl", "-ubob:hunter2"], &["curl", "-ubob:[REDACTED]"]),
        case(&["curl", "-fsSu", "bob:hunter2", "u"], &["curl", "-fsSu", "bob:[REDACTED]", "u"]),
        case(&["curl", "-U", "proxy:pw", "-x", "http://p:3128", "u"], &["curl", "-U", "proxy:[REDACTED]", "-x", "http://p:3128", "u"]),
        case(&["curl", "-u", ":tok:en", "u"], &["curl", "-u", ":[REDACTED]", "u"]),
        // A user alone: curl prompts for the password.
        unchanged(&["curl", "-u", "bob", "https://a.example/"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn token_as_url_user() {
    let glpat = fake("glpat-", 20);
    let random = fake("", 24);
    check(&[
        case(&["git", "clone", &format!("https://{glpat}@gitlab.com/g/p.git")], &["git", "clone", "https://[REDACTED]@gitlab.com/g/p.git"]),
        case(&["git", "push", &format!("https://{random}@git.example/r")], &["git", "push", "https://[REDACTED]@git.example/r"]),
        case(&["git", "clone", &format!("https://oauth2:{glpat}@gitlab.com/g/p")], &["git", "clone", "https://oauth2:[REDACTED]@gitlab.com/g/p"]),
        unchanged(&["git", "clone", "ssh://git@gitlab.com/g/p.git", "https://bob@git.example/r"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn url_password_with_a_slash() {
    check(&[
        case(&["git", "clone", "https://bob:pa/ss@git.example/r.git"], &["git", "clone", "https://bob:[REDACTED]@git.example/r.git"]),
        case(&["psql", "postgres://u:a/b@c@db:5432/app"], &["psql", "postgres://u:[REDACTED]@db:5432/app"]),
        case(&["curl", "https://u:12345@h/"], &["curl", "https://u:[REDACTED]@h/"]),
        // A port then a path holding an `@` is not a password.
        unchanged(&["npm", "view", "https://registry.example:8443/@scope/pkg"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn inline_code_with_spaces_around_equals() {
    check(&[
        case(&["python3", "-c", "api_key = 'abc123'; run(api_key)"], &["python3", "-c", "api_key = '[REDACTED]'; run(api_key)"]),
        case(&["python3", "-c", "c = Client(api_key = \"abc\", n = 1)"], &["python3", "-c", "c = Client(api_key = \"[REDACTED]\", n = 1)"]),
        case(&["node", "-e", "const token = 'abc'"], &["node", "-e", "const token = '[REDACTED]'"]),
        case(&["python3", "-c", "PASSWORD\t=\tload()"], &["python3", "-c", "PASSWORD\t=\t[REDACTED]"]),
        // A comparison is not an assignment.
        unchanged(&["python3", "-c", "if key == 'q': quit()"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn configuration_set_commands() {
    check(&[
        case(&["aws", "configure", "set", "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG"], &["aws", "configure", "set", "aws_secret_access_key", R]),
        case(&["aws", "configure", "set", "aws_session_token", "abc", "--profile", "p"], &["aws", "configure", "set", "aws_session_token", R, "--profile", "p"]),
        case(&["git", "config", "--global", "github.token", "abc"], &["git", "config", "--global", "github.token", R]),
        case(&["pip", "config", "set", "global.password", "abc"], &["pip", "config", "set", "global.password", R]),
        unchanged(&["aws", "configure", "get", "aws_secret_access_key", "--profile", "p"]),
        unchanged(&["git", "config", "--get", "github.token"]),
        unchanged(&["aws", "configure", "set", "region", "eu-west-1"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn password_flags_with_a_prefix() {
    check(&[
        case(&["app", "--dbpass", "hunter2"], &["app", "--dbpass", R]),
        case(&["app", "--dbpass=hunter2"], &["app", "--dbpass=[REDACTED]"]),
        case(&["app", "--db-pass", "hunter2", "--adminpass", "x"], &["app", "--db-pass", R, "--adminpass", R]),
        case(&["env", "DBPASS=hunter2", "SMTPPASS=x"], &["env", "DBPASS=[REDACTED]", "SMTPPASS=[REDACTED]"]),
        unchanged(&["app", "--bypass", "cache", "--compass", "n", "--passes", "2"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn secret_names_with_a_value_word() {
    check(&[
        case(&["env", "MY_SECRET_VALUE=hunter2"], &["env", "MY_SECRET_VALUE=[REDACTED]"]),
        case(&["app", "--key-data", "abc", "--token-b64", "def"], &["app", "--key-data", R, "--token-b64", R]),
        case(&["sh", "-c", "SIGNING_KEY_HEX=ab12 ./sign"], &["sh", "-c", "SIGNING_KEY_HEX=[REDACTED] ./sign"]),
        unchanged(&["app", "--secret-id", "prod/db", "--key-name", "k"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn positional_rules_inside_scripts() {
    check(&[
        case(&["bash", "-c", "sshpass -p 'pw d' ssh h && ls"], &["bash", "-c", "sshpass -p '[REDACTED]' ssh h && ls"]),
        case(&["sh", "-c", "mysql -uroot -phunter2 -e 'select 1'"], &["sh", "-c", "mysql -uroot -p[REDACTED] -e 'select 1'"]),
        case(&["bash", "-lc", "curl -su bob:pw https://a/ | jq ."], &["bash", "-lc", "curl -su bob:[REDACTED] https://a/ | jq ."]),
        case(&["bash", "-lc", "curl -u bob:pw https://a/ | jq ."], &["bash", "-lc", "curl -u bob:[REDACTED] https://a/ | jq ."]),
        case(&["bash", "-c", "tool --api-key abc --verbose; echo done"], &["bash", "-c", "tool --api-key [REDACTED] --verbose; echo done"]),
        case(&["bash", "-c", "aws configure set aws_secret_access_key \"x/y\""], &["bash", "-c", "aws configure set aws_secret_access_key \"[REDACTED]\""]),
        unchanged(&["bash", "-c", "grep -p x f; ssh -p 22 h; ls -u"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn other_tools_taking_passwords() {
    check(&[
        case(&["redis-cli", "-a", "pw", "ping"], &["redis-cli", "-a", R, "ping"]),
        case(&["docker", "login", "-u", "bob", "-p", "pw", "reg.example"], &["docker", "login", "-u", "bob", "-p", R, "reg.example"]),
        case(&["smbclient", "//srv/s", "-U", "bob%pw"], &["smbclient", "//srv/s", "-U", "bob%[REDACTED]"]),
        case(&["zip", "-P", "pw", "a.zip", "f"], &["zip", "-P", R, "a.zip", "f"]),
        case(&["7z", "x", "-ppw", "a.7z"], &["7z", "x", "-p[REDACTED]", "a.7z"]),
        case(&["sqlcmd", "-S", "db", "-U", "sa", "-P", "pw"], &["sqlcmd", "-S", "db", "-U", "sa", "-P", R]),
        case(&["ldapsearch", "-D", "cn=admin", "-w", "pw"], &["ldapsearch", "-D", "cn=admin", "-w", R]),
        case(&["mongosh", "-u", "root", "-p", "pw"], &["mongosh", "-u", "root", "-p", R]),
        unchanged(&["mongosh", "-u", "root", "-p", "--host", "db"]),
        unchanged(&["docker", "run", "-p", "80:80", "img"]),
    ]);
}

/// Bare tokens, each the whole argument and inside text.
fn shape_cases(tokens: &[String]) -> Vec<Case> {
    tokens
        .iter()
        .flat_map(|t| {
            let text = format!("use {t} now");
            [
                case(&["t", t], &["t", R]),
                case(&["echo", &text], &["echo", "use [REDACTED] now"]),
            ]
        })
        .collect()
}

#[test]
fn groq_keys() {
    check(&shape_cases(&[fake("gsk_", 52)]));
}

#[test]
fn xai_perplexity_replicate_keys() {
    check(&shape_cases(&[
        fake("xai-", 80),
        fake("pplx-", 48),
        fake("r8_", 37),
    ]));
}

#[test]
fn gitlab_tokens() {
    check(&shape_cases(&[
        fake("glpat-", 20),
        fake("gldt-", 20),
        fake("glrt-", 26),
        format!("{}.01.{}", fake("glpat-", 27), fake("", 9)),
    ]));
}

#[test]
fn npm_and_pypi_tokens() {
    check(&shape_cases(&[
        fake("npm_", 36),
        fake("pypi-AgEIcHlwaS5vcmc", 60),
    ]));
}

#[test]
fn vault_and_sendgrid_tokens() {
    check(&shape_cases(&[
        fake("hvs.", 90),
        fake("hvb.", 120),
        format!("{}.{}", fake("SG.", 22), fake("", 43)),
    ]));
}

#[test]
fn google_oauth_tokens() {
    check(&shape_cases(&[
        fake("ya29.", 120),
        fake("GOCSPX-", 28),
        fake("1//0", 60),
    ]));
}

#[test]
fn langsmith_and_age_keys() {
    check(&shape_cases(&[
        format!("{}_{}", fake("lsv2_pt_", 32), fake("", 10)),
        fake("ls__", 32),
        fake_upper("AGE-SECRET-KEY-1", 58),
    ]));
}

#[rustfmt::skip]
#[test]
fn webhook_urls() {
    let slack = format!("https://hooks.slack.com/services/T0{}/B0{}/{}", fake_upper("", 8), fake_upper("", 8), fake("", 24));
    let discord = format!("https://discord.com/api/webhooks/123456789/{}", fake("", 68));
    check(&[
        case(&["curl", "-X", "POST", &slack], &["curl", "-X", "POST", "https://hooks.slack.com/services/[REDACTED]"]),
        case(&["curl", "-d", "{}", &discord], &["curl", "-d", "{}", "https://discord.com/api/webhooks/[REDACTED]"]),
        unchanged(&["curl", "https://hooks.slack.com/"]),
    ]);
}
