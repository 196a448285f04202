//! Loading templates: the shipped directory, then the override directory, regular files only
//! and within the limits on their number and size.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tera::Tera;

use super::{error_chain, RenderError};
use crate::config::Config;

/// Largest template file loaded, in bytes.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Most template files loaded from one directory tree.
pub const MAX_TEMPLATES: usize = 1000;

/// Loads the templates of the shipped and the override directory, and checks that every
/// `[[files]]` entry names one of them.
pub(super) fn templates(config: &Config) -> Result<Tera, RenderError> {
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    collect(&config.templates.dir, &mut sources)?;
    if let Some(dir) = &config.templates.override_dir {
        collect(dir, &mut sources)?;
    }
    let mut tera = Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    let mut raw = Vec::with_capacity(sources.len());
    for (name, path) in &sources {
        let text = fs::read_to_string(path).map_err(|e| RenderError::Parse {
            template: path.display().to_string(),
            reason: e.to_string(),
        })?;
        raw.push((name.clone(), text));
    }
    tera.add_raw_templates(raw)
        .map_err(|e| RenderError::Parse {
            template: "(templates)".into(),
            reason: error_chain(&e),
        })?;
    for f in &config.files {
        if !tera.contains_template(&f.template) {
            return Err(RenderError::Missing {
                template: f.template.clone(),
                file: f.name.clone(),
            });
        }
    }
    Ok(tera)
}

/// Adds every regular file below `dir` to `out` under its relative path.
fn collect(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<(), RenderError> {
    let err = |reason: String| RenderError::Load {
        dir: dir.to_owned(),
        reason,
    };
    let mut stack = vec![dir.to_owned()];
    let mut count = 0usize;
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| err(format!("{}: {e}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(|e| err(e.to_string()))?;
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                count += 1;
                if count > MAX_TEMPLATES {
                    return Err(err(format!("more than {MAX_TEMPLATES} files")));
                }
                if meta.len() > MAX_TEMPLATE_BYTES {
                    return Err(err(format!(
                        "{} is larger than {MAX_TEMPLATE_BYTES} bytes",
                        path.display()
                    )));
                }
                let rel = path
                    .strip_prefix(dir)
                    .expect("walked below dir")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, path);
            }
        }
    }
    Ok(())
}
