//! S3, Azure Blob and GCS targets: built from the URL, object_store's own
//! option keys, and credentials from the environment or a credentials file.
//!
//! `parse_url_opts` silently drops keys it does not know and reads no
//! environment; here every key must parse as the scheme's config key (an
//! unknown or misspelled one is an error naming the target and the key), and
//! the URL's path becomes a prefix under which every object lives. Values
//! never appear in errors or logs.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

use super::TargetSettings;
use super::s3api::S3Api;
use crate::error::{Error, Result};

/// Environment variables read for each kind of store, as object_store keys.
const S3_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
/// (With `use_emulator = "true"`, object_store itself reads Azurite's
/// address from `AZURITE_BLOB_STORAGE_URL`.)
const AZURE_ENV: &[&str] = &["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"];
const GCS_ENV: &[&str] = &["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY"];

type Secrets = BTreeMap<String, Zeroizing<String>>;

fn credentials_err(target: &str, path: &Path, message: String) -> Error {
    Error::TargetConfig {
        target: target.to_string(),
        message: format!("credentials_file {}: {message}", path.display()),
    }
}

/// Whether `key` names one of `scheme`'s options (`AWS_SECRET_ACCESS_KEY`
/// and `aws_secret_access_key` alike).
fn is_option_key(scheme: &str, key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    match scheme {
        "s3" | "s3a" => AmazonS3ConfigKey::from_str(&key).is_ok(),
        "gs" => GoogleConfigKey::from_str(&key).is_ok(),
        _ => AzureConfigKey::from_str(&key).is_ok(),
    }
}

/// Reads a credentials file: `KEY=value` lines, `#` comments, mode 0600,
/// every key one of `scheme`'s options (`files::read_credentials`).
pub fn read_credentials_file(target: &str, path: &Path, scheme: &str) -> Result<Secrets> {
    let lines = crate::files::read_credentials(
        path,
        &|key| is_option_key(scheme, key),
        &format!("one of the {scheme}:// options"),
    )
    .map_err(|message| credentials_err(target, path, message))?;
    Ok(lines.into_iter().collect())
}

/// The options a target is built with: environment, then credentials file,
/// then `options` from agent.toml, later ones winning.
fn gather(target: &TargetSettings, scheme: &str, env_names: &[&str]) -> Result<Secrets> {
    let mut all = Secrets::new();
    for name in env_names {
        if let Ok(v) = std::env::var(name)
            && !v.is_empty()
        {
            all.insert((*name).to_string(), Zeroizing::new(v));
        }
    }
    if let Some(path) = &target.credentials_file {
        all.extend(read_credentials_file(&target.name, path, scheme)?);
    }
    for (k, v) in &target.options {
        all.insert(k.clone(), Zeroizing::new(v.clone()));
    }
    Ok(all)
}

fn parse_key<K: FromStr>(target: &str, scheme: &str, key: &str) -> Result<K> {
    K::from_str(&key.to_ascii_lowercase()).map_err(|_| Error::TargetConfig {
        target: target.to_string(),
        message: format!("option {key:?} is not a known {scheme}:// option"),
    })
}

/// Checks a remote target's option keys, without credentials or network.
pub(super) fn check_options(target: &TargetSettings, scheme: &str) -> Result<()> {
    for k in target.options.keys() {
        match scheme {
            "s3" | "s3a" => parse_key::<AmazonS3ConfigKey>(&target.name, scheme, k).map(drop)?,
            "gs" => parse_key::<GoogleConfigKey>(&target.name, scheme, k).map(drop)?,
            _ => parse_key::<AzureConfigKey>(&target.name, scheme, k).map(drop)?,
        }
    }
    Ok(())
}

/// A remote target's store, and for S3 the client of the calls
/// object_store does not make (`s3api`).
pub(super) struct Built {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) s3: Option<Arc<S3Api>>,
}

pub(super) fn build(target: &TargetSettings, url: &url::Url) -> Result<Built> {
    let name = target.name.as_str();
    let build_err = |e: object_store::Error| Error::TargetConfig {
        target: name.to_string(),
        message: e.to_string(),
    };
    let scheme = url.scheme();
    // gallra retries and times out every call itself (store/requests.rs), so
    // object_store's retries are off: two nested loops would multiply.
    let no_retry = RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let client = ClientOptions::new().with_timeout(target.limits.timeout);
    // The bucket or container is the URL's host; its path is our prefix.
    let prefix = url.path().trim_matches('/');
    let mut s3 = None;
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            // One DeleteObject per key rather than the batch DeleteObjects:
            // gallra deletes one object at a time anyway, and a policy that
            // lets a fleet server delete only its locks is checked per key
            // by every S3 server for the single call (docs/IMMUTABLE.md).
            let mut b = AmazonS3Builder::new()
                .with_url(url.as_str())
                .with_retry(no_retry)
                .with_client_options(client)
                .with_config(AmazonS3ConfigKey::DisableBulkDelete, "true");
            for (k, v) in gather(target, scheme, S3_ENV)? {
                b = b.with_config(
                    parse_key::<AmazonS3ConfigKey>(name, scheme, &k)?,
                    v.as_str(),
                );
            }
            let bucket = url.host_str().unwrap_or_default();
            let built = b.clone().build().map_err(build_err)?;
            let api = S3Api::new(
                &b,
                built.credentials().clone(),
                bucket,
                prefix,
                target.limits.timeout,
            )
            .map_err(|message| Error::TargetConfig {
                target: name.to_string(),
                message,
            })?;
            s3 = Some(Arc::new(api));
            Arc::new(built)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::new()
                .with_url(url.as_str())
                .with_retry(no_retry)
                .with_client_options(client);
            for (k, v) in gather(target, scheme, GCS_ENV)? {
                b = b.with_config(parse_key::<GoogleConfigKey>(name, scheme, &k)?, v.as_str());
            }
            Arc::new(b.build().map_err(build_err)?)
        }
        _ => {
            let mut b = MicrosoftAzureBuilder::new()
                .with_url(url.as_str())
                .with_retry(no_retry)
                .with_client_options(client);
            for (k, v) in gather(target, scheme, AZURE_ENV)? {
                b = b.with_config(parse_key::<AzureConfigKey>(name, scheme, &k)?, v.as_str());
            }
            Arc::new(b.build().map_err(build_err)?)
        }
    };
    Ok(Built {
        store: if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        },
        s3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn target(url: &str, options: &[(&str, &str)]) -> TargetSettings {
        let mut t = TargetSettings::new("offsite", url);
        t.options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        t
    }

    const S3_OPTS: &[(&str, &str)] = &[
        ("endpoint", "http://127.0.0.1:1"),
        ("region", "eu-north-1"),
        ("allow_http", "true"),
        ("aws_access_key_id", "AKIDEXAMPLE"),
        ("aws_secret_access_key", "s3cr3t-value-never-shown"),
    ];

    #[test]
    fn s3_azure_and_gcs_targets_build_from_url_and_options() {
        Store::open(&target("s3://bucket/web01", S3_OPTS)).unwrap();
        Store::open(&target(
            "az://container/web01",
            &[
                ("use_emulator", "true"),
                ("account_name", "devstoreaccount1"),
                ("access_key", "a2V5"),
            ],
        ))
        .unwrap();
        // GCS has no emulator here: its options are checked, not exercised.
        let e = Store::open(&target("gs://bucket/web01", &[("service_acount", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("service_acount") && e.contains("gs://"), "{e}");
    }

    #[test]
    fn an_unknown_option_names_target_and_key_and_no_value() {
        let mut opts = S3_OPTS.to_vec();
        opts.push(("endpont", "http://127.0.0.1:2"));
        let e = Store::open(&target("s3://bucket/web01", &opts)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("offsite") && msg.contains("endpont"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert_eq!(e.exit_code(), 2);
        let e = Store::open(&target("file:///tmp/x", &[("region", "x")])).unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
    }

    #[test]
    fn credentials_files_must_be_private_and_are_never_echoed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsite.env");
        std::fs::write(
            &path,
            "# offsite\nAWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY = \"s3cr3t\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_credentials_file("offsite", &path, "s3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0644") && e.contains("offsite.env"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let creds = read_credentials_file("offsite", &path, "s3").unwrap();
        assert_eq!(creds["AWS_SECRET_ACCESS_KEY"].as_str(), "s3cr3t");
        std::fs::write(&path, "AWS_SECRET_ACCESS_KEY s3cr3t\n").unwrap();
        let e = read_credentials_file("offsite", &path, "s3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && !e.contains("s3cr3t"), "{e}");

        let mut t = target(
            "s3://bucket/web01",
            &[
                ("endpoint", "http://127.0.0.1:1"),
                ("allow_http", "true"),
                ("region", "x"),
            ],
        );
        std::fs::write(
            &path,
            "AWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY=s3cr3t\n",
        )
        .unwrap();
        t.credentials_file = Some(path);
        Store::open(&t).unwrap();
    }

    #[test]
    fn a_credentials_line_without_equals_never_echoes_the_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsite.env");
        // A base64 secret ends in '=': split at it, the secret is the "key".
        for text in [
            "AWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY wJalrXUtnFEMIK7MDENGbPxRfiCY+EXAMPLE=\n",
            "AWS_ACCESS_KEY_ID=AKID\nwJalrXUtnFEMIK7MDENGbPxRfiCY+EXAMPLE=\n",
        ] {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = read_credentials_file("offsite", &path, "s3")
                .unwrap_err()
                .to_string();
            assert!(e.contains("offsite.env") && e.contains("line 2"), "{e}");
            assert!(!e.contains("wJalr") && !e.contains("EXAMPLE"), "{e}");
            let mut t = target("s3://bucket/web01", &[("region", "x")]);
            t.credentials_file = Some(path.clone());
            let e = Store::open(&t).unwrap_err().to_string();
            assert!(e.contains("line 2") && !e.contains("wJalr"), "{e}");
            let problem = crate::store::credentials_file_problem(&t).unwrap();
            assert!(
                problem.contains("line 2") && !problem.contains("wJalr"),
                "{problem}"
            );
        }
    }
}
