//! Line numbers for paths in a YAML document, so that errors found after
//! deserialising (cross-field checks) can still name the line at fault.
//!
//! Paths use the same form as `serde_yaml_ng`'s errors: `ports[1].device`.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Maps each mapping key and sequence item path to its 1-based line.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
    /// The line of the second occurrence of each mapping key given twice.
    repeats: HashMap<String, usize>,
}

enum Frame {
    /// In a mapping; `key` is the path of the pending key (awaiting its value) if any.
    Map { path: String, key: Option<String> },
    /// In a sequence; `next` is the index of the next item.
    Seq { path: String, next: usize },
}

impl LineIndex {
    /// Indexes `src`. A document that does not parse yields an empty index
    /// (its parse error is reported by the deserialiser instead).
    pub fn new(src: &str) -> LineIndex {
        let mut lines = HashMap::new();
        let mut repeats = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for ev in Parser::new_from_str(src) {
            let Ok((event, span)) = ev else { break };
            let line = span.start.line();
            // The path a value starting here occupies, if it is a value.
            let value_path =
                |stack: &mut Vec<Frame>, lines: &mut HashMap<String, usize>| -> Option<String> {
                    match stack.last_mut() {
                        None => Some(String::new()),
                        Some(Frame::Map { key, .. }) => key.take(),
                        Some(Frame::Seq { path, next }) => {
                            let p = format!("{path}[{next}]");
                            *next += 1;
                            lines.entry(p.clone()).or_insert(line);
                            Some(p)
                        }
                    }
                };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        // A key.
                        let p = if path.is_empty() {
                            value.to_string()
                        } else {
                            format!("{path}.{value}")
                        };
                        if lines.contains_key(&p) {
                            repeats.entry(p.clone()).or_insert(line);
                        } else {
                            lines.insert(p.clone(), line);
                        }
                        *key = Some(p);
                    } else {
                        value_path(&mut stack, &mut lines);
                    }
                }
                Event::Alias(_) => {
                    value_path(&mut stack, &mut lines);
                }
                Event::MappingStart(..) => {
                    let p = value_path(&mut stack, &mut lines).unwrap_or_default();
                    stack.push(Frame::Map { path: p, key: None });
                }
                Event::SequenceStart(..) => {
                    let p = value_path(&mut stack, &mut lines).unwrap_or_default();
                    stack.push(Frame::Seq { path: p, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        LineIndex { lines, repeats }
    }

    /// The line where the mapping key at `path` (e.g. `ports[0].name`) is
    /// given a second time, if it is.
    pub fn repeated_line(&self, path: &str) -> Option<usize> {
        self.repeats.get(path).copied()
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let src = "eal:\n  memory_mb: 64\nports:\n  - name: a\n    device: net_ring0\n  - name: b\n    device: x\nworkers: [ {lcore: 1}, {lcore: 2} ]\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("eal.memory_mb"), Some(2));
        assert_eq!(ix.line("ports[0].name"), Some(4));
        assert_eq!(ix.line("ports[1].device"), Some(7));
        assert_eq!(ix.line("ports[1]"), Some(6));
        assert_eq!(ix.line("workers[1].lcore"), Some(8));
        assert_eq!(ix.line("ports[1].mtu"), Some(6), "falls back to the parent");
        assert_eq!(ix.line("nothing"), None);
        assert_eq!(ix.repeated_line("ports[0].name"), None);
    }

    #[test]
    fn finds_repeated_keys() {
        let src =
            "eal:\n  memory_mb: 64\nports:\n  - name: a\n    name: b\neal:\n  memory_mb: 32\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("eal"), Some(1));
        assert_eq!(ix.repeated_line("eal"), Some(6));
        assert_eq!(ix.repeated_line("ports[0].name"), Some(5));
        assert_eq!(ix.repeated_line("ports"), None);
    }
}
