//! Replies about maps: the list of `show map`, the entries of `show map <map>` (whole or
//! one line at a time, for streaming) and the version `prepare map` created.

use super::ReplyError;

/// The version number in the reply to `prepare map`: `"New version created: 1\n\n"`.
pub fn parse_prepared_version(reply: &str) -> Result<u64, ReplyError> {
    if reply.is_empty() {
        return Err(ReplyError::Empty);
    }
    let line = reply.trim();
    match line.strip_prefix("New version created:") {
        Some(rest) => rest
            .trim()
            .parse()
            .map_err(|_| ReplyError::unexpected("prepare map", reply)),
        None => Err(ReplyError::refused(reply)),
    }
}

/// One map as listed by `show map` without argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// HAProxy's numeric id of the map (usable as `#<id>`).
    pub id: u32,
    /// The file name the map was loaded from, as written in the configuration.
    pub path: String,
    /// Version currently used for lookups.
    pub curr_ver: u64,
    /// Highest version handed out by `prepare map` (equal to `curr_ver` when none is pending).
    pub next_ver: u64,
    /// Entries of ALL versions held (current plus prepared ones).
    pub entry_cnt: u64,
}

/// Parses the map list of `show map`:
/// `# id (file) description` then one line per map, then a blank line.
pub fn parse_map_list(reply: &str) -> Result<Vec<MapInfo>, ReplyError> {
    const WHAT: &str = "show map list";
    let mut lines = reply.lines();
    match lines.next() {
        Some(header) if header.starts_with("# id") => {}
        Some(_) => return Err(ReplyError::refused(reply)),
        None => return Err(ReplyError::Empty),
    }
    let mut maps = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        maps.push(parse_map_list_line(line).ok_or_else(|| ReplyError::unexpected(WHAT, line))?);
    }
    Ok(maps)
}

fn parse_map_list_line(line: &str) -> Option<MapInfo> {
    let (id, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('(')?;
    // The file name contains no ") " in practice; the description after it may contain
    // anything, so the counters are read from the end of the line.
    let (path, description) = rest.split_once(") ")?;
    let mut curr_ver = None;
    let mut next_ver = None;
    let mut entry_cnt = None;
    for word in description.split_ascii_whitespace().rev().take(3) {
        let (name, value) = word.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match name {
            "curr_ver" => curr_ver = Some(value),
            "next_ver" => next_ver = Some(value),
            "entry_cnt" => entry_cnt = Some(value),
            _ => return None,
        }
    }
    Some(MapInfo {
        id: id.parse().ok()?,
        path: path.to_owned(),
        curr_ver: curr_ver?,
        next_ver: next_ver?,
        entry_cnt: entry_cnt?,
    })
}

/// What one line of `show map <map>` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapLine<'a> {
    /// `0x55cf21cb04d0 key value`: an entry (pointer dropped). The value is the rest of the
    /// line, so values loaded from a file with inner spaces survive.
    Entry(&'a str, &'a str),
    /// The blank line that ends the listing.
    End,
}

/// Parses one line (without its `\n`) of `show map <map>`. A line that is not an entry is
/// HAProxy's error text (e.g. `Unknown map identifier...`): the caller collects the rest of
/// the reply and reports it with [`ReplyError::Refused`]. Returns `None` for such a line.
pub fn parse_map_line(line: &str) -> Option<MapLine<'_>> {
    if line.is_empty() {
        return Some(MapLine::End);
    }
    let rest = line.strip_prefix("0x")?;
    let (pointer, rest) = rest.split_once(' ')?;
    if pointer.is_empty() || !pointer.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(MapLine::Entry(key, value))
}

/// Parses a whole `show map <map>` reply into `(key, value)` pairs in HAProxy's order.
/// An empty map answers `"\n"`. For large maps prefer streaming with [`parse_map_line`].
pub fn parse_map_entries(reply: &str) -> Result<Vec<(String, String)>, ReplyError> {
    if reply.is_empty() {
        return Err(ReplyError::Empty);
    }
    let mut entries = Vec::new();
    for line in reply.lines() {
        match parse_map_line(line) {
            Some(MapLine::Entry(k, v)) => entries.push((k.to_owned(), v.to_owned())),
            Some(MapLine::End) => break,
            None => return Err(ReplyError::refused(reply)),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP_LIST: &str = "# id (file) description\n\
        0 (/tmp/hx/empty.map) pattern loaded from file '/tmp/hx/empty.map' used by map at file 'h.cfg' line 12. curr_ver=0 next_ver=0 entry_cnt=0\n\
        2 (/tmp/hx/routes.map) pattern loaded from file '/tmp/hx/routes.map' used by map at file 'h.cfg' line 11. curr_ver=0 next_ver=1 entry_cnt=622\n\
        \n";

    #[test]
    fn prepared_version() {
        assert_eq!(parse_prepared_version("New version created: 1\n\n"), Ok(1));
        assert_eq!(
            parse_prepared_version("New version created: 4096\n\n"),
            Ok(4096)
        );
        assert_eq!(parse_prepared_version(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_prepared_version("Unknown map identifier. Please use #<id> or <file>.\n\n"),
            Err(ReplyError::Refused { reply }) if reply.starts_with("Unknown map identifier")
        ));
        assert!(matches!(
            parse_prepared_version("New version created: x\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn map_list() {
        let maps = parse_map_list(MAP_LIST).unwrap();
        assert_eq!(
            maps,
            vec![
                MapInfo {
                    id: 0,
                    path: "/tmp/hx/empty.map".into(),
                    curr_ver: 0,
                    next_ver: 0,
                    entry_cnt: 0
                },
                MapInfo {
                    id: 2,
                    path: "/tmp/hx/routes.map".into(),
                    curr_ver: 0,
                    next_ver: 1,
                    entry_cnt: 622
                },
            ]
        );
        assert_eq!(
            parse_map_list("# id (file) description\n\n").unwrap(),
            vec![]
        );
        assert_eq!(parse_map_list(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_map_list("# id (file) description\n2 (/x.map) no counters\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn map_entries_in_order() {
        let reply = "0x55cf21cb04d0 a.example svc_a\n0x55cf21cb0560 b.example svc_b\n\n";
        assert_eq!(
            parse_map_entries(reply).unwrap(),
            vec![
                ("a.example".to_owned(), "svc_a".to_owned()),
                ("b.example".to_owned(), "svc_b".to_owned())
            ]
        );
        assert_eq!(parse_map_entries("\n").unwrap(), vec![]);
        // A value loaded from a file may hold spaces: it is the rest of the line.
        assert_eq!(
            parse_map_line("0x1f k some value"),
            Some(MapLine::Entry("k", "some value"))
        );
        assert_eq!(parse_map_line(""), Some(MapLine::End));
        assert_eq!(parse_map_line("0xZZ k v"), None);
        assert!(matches!(
            parse_map_entries("Unknown map identifier. Please use #<id> or <file>.\n\n"),
            Err(ReplyError::Refused { reply }) if reply == "Unknown map identifier. Please use #<id> or <file>."
        ));
    }
}
