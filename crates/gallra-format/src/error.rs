//! The format's one error: an object or blob that does not decode or
//! authenticate. gallra turns it into its own `Error::Corrupt`, word for
//! word, so a message reads the same whichever crate found the fault.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `object` is the name the caller gave the bytes (a store path, or a
    /// blob's id), `message` what is wrong with them.
    #[error("{object}: {message}")]
    Corrupt { object: String, message: String },
}

impl Error {
    pub fn corrupt(object: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            message: message.into(),
        }
    }
}
