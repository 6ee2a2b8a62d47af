//! Line and column of every node in a YAML document, by serde-style path
//! (`sources[1].metrics[0].each`).
//!
//! serde_norway reports positions only for the errors it raises itself; validation errors found
//! after deserializing (a bad JSONPath, a duplicate name) are located through this index, built
//! from a second, event-level parse of the same text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Locator {
    positions: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Locator {
    /// Indexes `text`; a document the event parser rejects yields an empty index (the serde
    /// parse reports that error with its own position).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            positions: builder.positions,
            keys: builder.keys,
        }
    }

    /// Position of the key of the mapping entry at `path` (where a misspelt field is).
    pub fn find_key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied().or_else(|| self.find(path))
    }

    /// Position of the value at `path`, or of its closest located ancestor.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    /// `first`: no key seen yet (the mapping is then located at its first key, which is where
    /// a reader looks; the event's own mark can point past it).
    Map {
        key: Option<String>,
        first: bool,
    },
    Seq {
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<(String, Frame)>,
    positions: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Builder {
    /// The path of the node that starts now, advancing the parent's key/index state.
    fn child_path(&mut self) -> Option<String> {
        let (parent, frame) = match self.stack.last_mut() {
            None => return Some(String::new()),
            Some(top) => top,
        };
        match frame {
            Frame::Seq { index } => {
                let path = format!("{parent}[{index}]");
                *index += 1;
                Some(path)
            }
            Frame::Map { key, .. } => match key.take() {
                Some(k) if parent.is_empty() => Some(k),
                Some(k) => Some(format!("{parent}.{k}")),
                None => None,
            },
        }
    }

    fn start(&mut self, mark: Marker) -> Option<String> {
        let path = self.child_path();
        if let Some(p) = &path {
            self.positions.insert(
                p.clone(),
                Position {
                    line: mark.line(),
                    column: mark.col() + 1,
                },
            );
        }
        path
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                let awaiting_key =
                    matches!(self.stack.last(), Some((_, Frame::Map { key: None, .. })));
                if awaiting_key {
                    if let Some((path, Frame::Map { key, first })) = self.stack.last_mut() {
                        let p = Position {
                            line: mark.line(),
                            column: mark.col() + 1,
                        };
                        let key_path = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        self.keys.insert(key_path, p);
                        *key = Some(value);
                        if std::mem::take(first) && !path.is_empty() {
                            self.positions.insert(path.clone(), p);
                        }
                    }
                } else {
                    self.start(mark);
                }
            }
            Event::Alias(_) => {
                self.start(mark);
            }
            Event::MappingStart(..) => {
                let path = self.start(mark).unwrap_or_default();
                self.stack.push((
                    path,
                    Frame::Map {
                        key: None,
                        first: true,
                    },
                ));
            }
            Event::SequenceStart(..) => {
                let path = self.start(mark).unwrap_or_default();
                self.stack.push((path, Frame::Seq { index: 0 }));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_block_and_flow() {
        let text = "sources:\n  - name: a\n    metrics:\n      - name: m\n        labels: {app: \"{app}\", pod: x}\n";
        let loc = Locator::new(text);
        assert_eq!(
            loc.find("sources[0].name"),
            Some(Position {
                line: 2,
                column: 11
            })
        );
        assert_eq!(
            loc.find("sources[0].metrics[0].name"),
            Some(Position {
                line: 4,
                column: 15
            })
        );
        assert_eq!(
            loc.find("sources[0].metrics[0].labels.pod"),
            Some(Position {
                line: 5,
                column: 37
            })
        );
        // Unknown leaf: falls back to the closest ancestor.
        assert_eq!(
            loc.find("sources[0].metrics[0].value"),
            Some(Position { line: 4, column: 9 })
        );
    }
}
