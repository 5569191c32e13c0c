//! The audit events every changing command records: who ran it, and what
//! it changed.

use stamps_core::{Clock, SystemClock};
use stamps_store::{AuditEvent, Store};

/// Who runs this command, for the audit trail: the uid (which the kernel
/// vouches for) and, if set, the login name.
fn actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
    let uid = uid.map_or_else(|_| "?".to_owned(), |u| u.to_string());
    match std::env::var("USER") {
        Ok(name) if !name.is_empty() && name.len() <= 64 && !name.contains(char::is_control) => {
            format!("stamps-admin uid={uid} ({name})")
        }
        _ => format!("stamps-admin uid={uid}"),
    }
}

/// Records one admin change in the audit trail. The change is made
/// already, so a failure here is a warning, not a failed command.
pub fn audit(store: &dyn Store, action: &str, subject: String) {
    let event = AuditEvent::new(SystemClock.now(), actor(), action, subject);
    if let Err(e) = store.append_audit(&[event]) {
        eprintln!("warning: the change was made but not recorded in the audit trail: {e}");
    }
}
