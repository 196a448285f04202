//! The `[templates]` and `[[files]]` sections: where templates come from and the files
//! rendered from them.

use std::path::PathBuf;

use serde::Deserialize;

/// Default directory of the shipped templates.
pub const DEFAULT_TEMPLATE_DIR: &str = "/usr/share/cutover/templates";
/// Most `[[files]]` in one config.
pub const MAX_FILES: usize = 64;

/// Where the templates are and what they see besides the state (`[templates]`).
#[derive(Debug, Clone)]
pub struct Templates {
    /// Shipped templates. Default [`DEFAULT_TEMPLATE_DIR`].
    pub dir: PathBuf,
    /// User templates; a file here overrides the shipped one with the same relative path.
    pub override_dir: Option<PathBuf>,
    /// Free values for templates, visible as `vars` (e.g. listen addresses).
    pub vars: toml::Table,
}

use crate::protocol::FileKind;

/// One file rendered from a template.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Name templates use to refer to it (`files.<name>.path`).
    pub name: String,
    /// Template path relative to the template directories.
    pub template: String,
    /// Where the file lives.
    pub path: PathBuf,
    /// Whether the proxy takes it as a map (runtime update where possible) or as config
    /// (a checked reload). Required.
    pub kind: FileKind,
    /// Whether the template sees the live routing state. A file rendered from the config
    /// alone (`false`) is rendered again only when the config changes.
    pub uses_state: bool,
    /// What the values of a map must be; see [`ValueCheck`].
    pub values: ValueCheck,
    /// Whether the map may render no entries. Default false: an empty map looks valid and
    /// routes nothing, the classic outage, so it is refused unless the file says
    /// `allow_empty = true` (the default routes map allows it only when every service
    /// sets `allow_empty_routes = true`).
    pub allow_empty: bool,
}

/// A map rendered no entries and its `[[files]]` entry does not allow that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "map {file} renders no entries; an empty map looks valid and routes nothing \
     (set allow_empty = true on this [[files]] entry if that is intended)"
)]
pub struct EmptyMapError {
    /// The name of the `[[files]]` entry.
    pub file: String,
}

impl FileSpec {
    /// Refuses the rendered entries of this map when they are empty and the file does not
    /// allow that.
    pub fn check_entries(&self, entries: &crate::mapfile::MapEntries) -> Result<(), EmptyMapError> {
        if entries.is_empty() && self.kind == FileKind::Map && !self.allow_empty {
            return Err(EmptyMapError {
                file: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// What the values of a rendered map must name. A map whose values the agent can check
/// itself (services or backends) is applied without running the proxy's config checker:
/// its keys and values are proven valid tokens, and every value names something the
/// proxy config (or the running proxy) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueCheck {
    /// Any valid token; a change is validated with the proxy's checker when the main
    /// config is rendered by cutover.
    Any,
    /// Every value is a configured service.
    Services,
    /// Every value is a backend the running proxy lists.
    Backends,
    /// Every value is a whole percentage, 0 to 100 (the canary shares), optionally followed
    /// by `:` and the rollout's seed (a whole number below 2^32) that salts the sticky
    /// bucket.
    Percent,
}
