//! What pfgate writes and reads on a site besides its own configuration: a starting site
//! (`pfgate init`), MIM's `MfaSettings.xml` (`pfgate mim check`), and users files in and out
//! (`pfgate users import|export`, from MFA Server's exports or a CSV). The CLI drives them; nothing
//! on the request path uses them.

pub mod init;
pub mod mim;
pub mod users_csv;
pub mod users_import;
