//! The AWS KMS JSON protocol (`X-Amz-Target: TrentService.<Operation>`,
//! `application/x-amz-json-1.1`), SigV4-signed, for the five operations
//! gallra uses. Requests run on the store's runtime, from blocking code.

use aws_credential_types::Credentials;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

use super::KeyServiceSettings;
use crate::error::{Error, Result};

/// What the service says of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKeyState {
    Enabled,
    /// Unusable from the moment it was scheduled; gone at `deletion`.
    PendingDeletion {
        deletion: Option<jiff::Timestamp>,
    },
    /// Disabled, or a state gallra does not expect (named as the service does).
    Other(String),
}

/// A client of one key service.
pub struct KeyService {
    settings: KeyServiceSettings,
    credentials: Credentials,
    http: reqwest::Client,
}

/// Requests a transient failure repeats.
const ATTEMPTS: u32 = 4;

impl KeyService {
    pub fn new(settings: &KeyServiceSettings) -> Result<KeyService> {
        let credentials = credentials(settings)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| service_error(settings, "connect", e.to_string()))?;
        Ok(KeyService {
            settings: settings.clone(),
            credentials,
            http,
        })
    }

    pub fn settings(&self) -> &KeyServiceSettings {
        &self.settings
    }

    /// Makes a symmetric encryption key; returns its key id (which every
    /// operation of the API accepts; moto's ScheduleKeyDeletion takes no
    /// ARN).
    pub fn create_key(&self, description: &str) -> Result<String> {
        let out = self.call(
            "CreateKey",
            json!({
                "Description": description,
                "KeyUsage": "ENCRYPT_DECRYPT",
                "KeySpec": "SYMMETRIC_DEFAULT",
            }),
        )?;
        key_metadata_field(&out, "KeyId")
            .ok_or_else(|| self.err("CreateKey", "the reply names no key".into()))
    }

    /// A new 256-bit data key under `key_id`, bound to `context`: its
    /// plaintext and the service's ciphertext of it.
    pub fn generate_data_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>)> {
        let out = self.call(
            "GenerateDataKey",
            json!({"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": context}),
        )?;
        let plaintext = self.plaintext_key("GenerateDataKey", &out)?;
        let blob = self.base64_field("GenerateDataKey", &out, "CiphertextBlob")?;
        Ok((plaintext, blob.to_vec()))
    }

    /// The plaintext of a data key the service made under `key_id`.
    pub fn decrypt(
        &self,
        key_id: &str,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<[u8; 32]>> {
        let out = self.call(
            "Decrypt",
            json!({
                "KeyId": key_id,
                "CiphertextBlob": B64.encode(blob),
                "EncryptionContext": context,
            }),
        )?;
        self.plaintext_key("Decrypt", &out)
    }

    /// Schedules `key_id` for deletion after the configured wait; returns
    /// when the service will delete it.
    pub fn schedule_key_deletion(&self, key_id: &str) -> Result<Option<jiff::Timestamp>> {
        let out = self.call(
            "ScheduleKeyDeletion",
            json!({"KeyId": key_id, "PendingWindowInDays": self.settings.deletion_wait_days}),
        )?;
        Ok(out.get("DeletionDate").and_then(timestamp))
    }

    pub fn describe_key(&self, key_id: &str) -> Result<ServiceKeyState> {
        let out = self.call("DescribeKey", json!({"KeyId": key_id}))?;
        let state = key_metadata_field(&out, "KeyState").unwrap_or_default();
        Ok(match state.as_str() {
            "Enabled" => ServiceKeyState::Enabled,
            "PendingDeletion" => ServiceKeyState::PendingDeletion {
                deletion: out
                    .get("KeyMetadata")
                    .and_then(|m| m.get("DeletionDate"))
                    .and_then(timestamp),
            },
            other => ServiceKeyState::Other(other.to_string()),
        })
    }

    fn err(&self, operation: &str, message: String) -> Error {
        service_error(&self.settings, operation, message)
    }

    fn plaintext_key(&self, operation: &str, out: &Value) -> Result<Zeroizing<[u8; 32]>> {
        let bytes = self.base64_field(operation, out, "Plaintext")?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            self.err(
                operation,
                format!("the data key is {} bytes, not 32", bytes.len()),
            )
        })?;
        Ok(Zeroizing::new(key))
    }

    fn base64_field(
        &self,
        operation: &str,
        out: &Value,
        field: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let text = out
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(operation, format!("the reply has no {field}")))?;
        B64.decode(text)
            .map(Zeroizing::new)
            .map_err(|_| self.err(operation, format!("the reply's {field} is not base64")))
    }

    /// One operation, repeated on a transient failure.
    fn call(&self, operation: &str, body: Value) -> Result<Value> {
        let body = serde_json::to_vec(&body).expect("JSON of strings");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(operation, &body) {
                // A CreateKey that failed after it was sent may have made
                // a key: another attempt would make a second.
                Err(Failed::Transient(message))
                    if attempt < ATTEMPTS && operation != "CreateKey" =>
                {
                    tracing::warn!(
                        "{}: {operation}: {message}; trying again",
                        self.settings.describe()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
                }
                Err(Failed::Transient(message) | Failed::Refused(message)) => {
                    return Err(self.err(operation, message));
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    fn call_once(&self, operation: &str, body: &[u8]) -> std::result::Result<Value, Failed> {
        let target = format!("TrentService.{operation}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let signing = crate::sigv4::signing_headers(
            crate::sigv4::Service::Kms,
            &self.settings.region,
            self.credentials.clone(),
            "POST",
            self.settings.endpoint.as_str(),
            &headers,
            body,
        )
        .map_err(Failed::Refused)?;
        let mut request = self.http.post(&self.settings.endpoint).body(body.to_vec());
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in &signing {
            request = request.header(name, value);
        }
        let reply = crate::store::block_on(async move {
            let response = request.send().await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        });
        let (status, bytes) = reply.map_err(|e| Failed::Transient(without_url(&e)))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let kind = value
            .get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let text = match message {
            "" => kind.clone(),
            m => format!("{kind}: {m}"),
        };
        let transient = status.is_server_error()
            || matches!(
                kind.as_str(),
                "ThrottlingException" | "KMSInternalException" | "DependencyTimeoutException"
            );
        Err(match transient {
            true => Failed::Transient(text),
            false => Failed::Refused(text),
        })
    }
}

enum Failed {
    Transient(String),
    Refused(String),
}

fn service_error(settings: &KeyServiceSettings, operation: &str, message: String) -> Error {
    Error::KeyService {
        service: settings.describe(),
        operation: operation.to_string(),
        message,
    }
}

/// reqwest's text without the URL, which the error already names.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn key_metadata_field(out: &Value, field: &str) -> Option<String> {
    out.get("KeyMetadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

/// KMS timestamps are seconds since the epoch, as a JSON number.
fn timestamp(v: &Value) -> Option<jiff::Timestamp> {
    let secs = v.as_f64()?;
    jiff::Timestamp::from_second(secs as i64).ok()
}

/// The access key: the credentials file's lines, else the environment.
fn credentials(settings: &KeyServiceSettings) -> Result<Credentials> {
    let mut found: BTreeMap<&'static str, Zeroizing<String>> = BTreeMap::new();
    const NAMES: [&str; 3] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    match &settings.credentials_file {
        Some(path) => {
            let lines = crate::files::read_credentials(
                path,
                &|key| NAMES.contains(&key.to_ascii_uppercase().as_str()),
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN",
            )
            .map_err(|message| Error::KeyServiceConfig {
                message: format!("credentials_file {}: {message}", path.display()),
            })?;
            for (key, value) in lines {
                let key = key.to_ascii_uppercase();
                let name = NAMES.iter().find(|n| **n == key).expect("accepted above");
                found.insert(name, value);
            }
        }
        None => {
            for name in NAMES {
                if let Ok(v) = std::env::var(name)
                    && !v.is_empty()
                {
                    found.insert(name, Zeroizing::new(v));
                }
            }
        }
    }
    let (Some(id), Some(secret)) = (
        found.get("AWS_ACCESS_KEY_ID"),
        found.get("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(Error::KeyServiceConfig {
            message: match &settings.credentials_file {
                Some(p) => format!(
                    "credentials_file {}: needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    p.display()
                ),
                None => "no credentials: set credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into(),
            },
        });
    };
    Ok(Credentials::new(
        id.as_str(),
        secret.as_str(),
        found.get("AWS_SESSION_TOKEN").map(|t| t.to_string()),
        None,
        "gallra",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn settings(file: &std::path::Path) -> KeyServiceSettings {
        KeyServiceSettings {
            endpoint: "http://127.0.0.1:9".into(),
            region: "eu-north-1".into(),
            credentials_file: Some(file.to_path_buf()),
            deletion_wait_days: 7,
            rotate_after: Duration::from_secs(86_400),
            timeout: Duration::from_secs(1),
        }
    }

    fn write(file: &std::path::Path, text: &str, mode: u32) {
        std::fs::write(file, text).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_credentials_file_is_private_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kms.env");
        write(
            &file,
            "# kms\naws_access_key_id=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=\"s3cret\"\n",
            0o600,
        );
        let c = credentials(&settings(&file)).unwrap();
        assert_eq!(c.access_key_id(), "AKIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "s3cret");

        write(
            &file,
            "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n",
            0o644,
        );
        let e = credentials(&settings(&file)).err().unwrap().to_string();
        assert!(e.contains("0600"), "{e}");

        write(
            &file,
            "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY hunter2==\n",
            0o600,
        );
        let e = credentials(&settings(&file)).err().unwrap().to_string();
        assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");

        write(&file, "AWS_ACCESS_KEY_ID=a\n", 0o600);
        let e = credentials(&settings(&file)).err().unwrap().to_string();
        assert!(
            e.contains("needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{e}"
        );
    }
}
