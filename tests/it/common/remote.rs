//! The S3 (SeaweedFS, moto) and Azure Blob (Azurite) servers that
//! tests/servers/start.sh starts, as targets for the CLI tests and the
//! conformance suite.

use super::*;
use gallra::store::Store;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The named variables, or `None` (a skip) outside CI; under CI, a failure.
pub fn server_env(server: &str, names: &[&str]) -> Option<Vec<String>> {
    let values: Option<Vec<String>> = names.iter().map(|n| var(n)).collect();
    if values.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{server}: {names:?} not set: .ci/run must start tests/servers/start.sh"
        );
        eprintln!("skipped: no {server} server (run tests/servers/start.sh ENV and source ENV)");
    }
    values
}

/// Runs a boto3 `script` with moto's venv python (`python`) and `args` as
/// its argv; it must succeed and print JSON, which is returned.
pub fn boto3(python: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let run = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run boto3");
    assert!(
        run.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("boto3 prints JSON")
}

/// A folder prefix no earlier run used: a developer's servers outlive one
/// test run.
pub fn unique_prefix(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A server to put targets on: its URL scheme and bucket, and the options
/// (with a given secret) that reach it.
pub struct Remote {
    pub url_base: String,
    options: Box<dyn Fn(&str) -> String>,
    pub secret: String,
}

impl Remote {
    /// SeaweedFS's S3, at the endpoint start.sh wrote.
    pub fn s3() -> Option<Remote> {
        let names = [
            "GALLRA_TEST_S3_ENDPOINT",
            "GALLRA_TEST_S3_BUCKET",
            "GALLRA_TEST_S3_ACCESS_KEY",
            "GALLRA_TEST_S3_SECRET_KEY",
        ];
        let v = server_env("S3", &names)?;
        Some(Remote::s3_at(&v[0], &v[1], &v[2], &v[3]))
    }

    pub fn s3_at(endpoint: &str, bucket: &str, access_key: &str, secret: &str) -> Remote {
        let (endpoint, access_key) = (endpoint.to_string(), access_key.to_string());
        Remote {
            url_base: format!("s3://{bucket}"),
            options: Box::new(move |secret| {
                format!(
                    "endpoint = {}, region = \"us-east-1\", allow_http = \"true\", \
                     aws_access_key_id = {}, aws_secret_access_key = {}",
                    toml_str(&endpoint),
                    toml_str(&access_key),
                    toml_str(secret)
                )
            }),
            secret: secret.to_string(),
        }
    }

    /// A bucket of moto's S3 (start.sh makes `gallra-versioned`, with
    /// versioning on, and `gallra-plain`), named by the variable
    /// `bucket_var`. moto takes any access key.
    pub fn moto(bucket_var: &str) -> Option<Remote> {
        let v = server_env("moto", &["GALLRA_TEST_MOTO_ENDPOINT", bucket_var])?;
        Some(Remote::s3_at(
            &v[0],
            &v[1],
            "gallratest",
            "gallratestsecret",
        ))
    }

    /// Azurite, whose address object_store reads from
    /// AZURITE_BLOB_STORAGE_URL.
    pub fn azure() -> Option<Remote> {
        let names = [
            "AZURITE_BLOB_STORAGE_URL",
            "GALLRA_TEST_AZURE_CONTAINER",
            "GALLRA_TEST_AZURE_ACCOUNT",
            "GALLRA_TEST_AZURE_KEY",
        ];
        let v = server_env("Azurite", &names)?;
        let account = v[2].clone();
        Some(Remote {
            url_base: format!("az://{}", v[1]),
            options: Box::new(move |secret| {
                format!(
                    "use_emulator = \"true\", account_name = {}, access_key = {}",
                    toml_str(&account),
                    toml_str(secret)
                )
            }),
            secret: v[3].clone(),
        })
    }

    /// The inline `options = { ... }` table's content, with this secret.
    pub fn options(&self, secret: &str) -> String {
        (self.options)(secret)
    }

    /// A `[[target]]` table for `prefix` on this server, with the right
    /// secret and `more` lines.
    pub fn target_table(&self, name: &str, prefix: &str, more: &str) -> String {
        format!(
            "[[target]]\nname = {}\nurl = {}\noptions = {{ {} }}\n{more}\n",
            toml_str(name),
            toml_str(&format!("{}/{prefix}", self.url_base)),
            self.options(&self.secret)
        )
    }

    /// The library's view of `prefix` on this server, to look at or plant
    /// objects behind the CLI's back.
    pub fn store(&self, prefix: &str) -> Store {
        let text = format!(
            "[key]\nfile = \"/nonexistent\"\n\n{}",
            self.target_table("offsite", prefix, "")
        );
        let config = gallra::config::Config::parse(&text, Path::new("/test/agent.toml"))
            .expect("test target parses");
        open_store(&config.targets[0])
    }
}
