//! Line and column of every node in a YAML document, by serde-style path
//! (`sources[1].metrics[0].each`), and the config's nesting limit.
//!
//! serde_norway reports positions only for the errors it raises itself; validation errors found
//! after deserializing (a bad JSONPath, a duplicate name) are located through this index, built
//! from a second, event-level parse of the same text.
//!
//! This pass runs first, before anything that recurses over the document, and is linear in
//! time and memory: events are pulled one at a time (never the parser's recursive `load`),
//! nodes are kept as a tree of (parent, key) rather than one full path string each (which
//! grows with the square of the depth), and nesting deeper than [`MAX_DEPTH`] stops it with
//! an error.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting of mappings and sequences a config may have. A real config is about 8
/// deep (`sources[0].metrics[0].values.x.mapping.y`); serde_norway stops at 128.
pub const MAX_DEPTH: usize = 64;

/// A 1-based position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The document nests deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub position: Position,
}

type NodeId = u32;
const ROOT: NodeId = 0;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Node {
    /// Where the value starts (a mapping: its first key).
    value: Option<Position>,
    /// Where its key is, for a mapping entry.
    key: Option<Position>,
    is_sequence: bool,
}

#[derive(Debug, Default)]
pub struct Locator {
    pub(super) nodes: Vec<Node>,
    /// (parent, key or `[index]`) to child.
    pub(super) children: HashMap<(NodeId, Box<str>), NodeId>,
}

impl Locator {
    /// Indexes `text`. Where the event parser stops on a syntax error, what came before it is
    /// kept (the serde parse reports that error with its own position). Only nesting beyond
    /// `MAX_DEPTH` is an error here.
    pub fn new(text: &str) -> Result<Self, TooDeep> {
        let mut b = Builder {
            loc: Locator {
                nodes: vec![Node::default()],
                children: HashMap::new(),
            },
            stack: Vec::new(),
            root_seen: false,
        };
        let mut parser = Parser::new_from_str(text);
        loop {
            let (ev, mark) = match parser.next_token() {
                Ok(e) => e,
                // The scanner looks ahead through flow collections (`[[[...`) and gives up
                // at 255 levels, before the events that would reach MAX_DEPTH here.
                Err(e) if e.info().contains("recursion limit") => {
                    return Err(TooDeep {
                        position: position(*e.marker()),
                    });
                }
                Err(_) => break,
            };
            match ev {
                Event::StreamEnd | Event::DocumentEnd => break,
                ev => b.on_event(ev, mark)?,
            }
        }
        Ok(b.loc)
    }

    /// Position of the key of the mapping entry at `path` (where a misspelt field is).
    pub fn find_key(&self, path: &str) -> Option<Position> {
        match self.walk(path) {
            (node, true) => self.nodes[node as usize].key.or_else(|| self.find(path)),
            _ => self.find(path),
        }
    }

    /// Position of the value at `path`, or of its closest located ancestor.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut ids = vec![ROOT];
        let mut node = ROOT;
        for seg in segments(path) {
            match self.children.get(&(node, seg.into())) {
                Some(&c) => {
                    node = c;
                    ids.push(c);
                }
                None => break,
            }
        }
        ids.iter()
            .rev()
            .find_map(|id| self.nodes[*id as usize].value)
    }

    /// Whether the value at `path` was written as a sequence (an empty one only as `[]`).
    pub fn is_sequence(&self, path: &str) -> bool {
        match self.walk(path) {
            (node, true) => self.nodes[node as usize].is_sequence,
            _ => false,
        }
    }

    /// The node at `path` and whether it was found whole.
    fn walk(&self, path: &str) -> (NodeId, bool) {
        let mut node = ROOT;
        for seg in segments(path) {
            match self.children.get(&(node, seg.into())) {
                Some(&c) => node = c,
                None => return (node, false),
            }
        }
        (node, true)
    }
}

/// `sources[1].metrics[0].each` as `sources`, `[1]`, `metrics`, `[0]`, `each`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return None;
        }
        let end = if rest.starts_with('[') {
            rest.find(']').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(['.', '[']).unwrap_or(rest.len())
        };
        let (seg, tail) = rest.split_at(end);
        rest = tail;
        Some(seg)
    })
}

enum Frame {
    /// `first`: no key seen yet (the mapping is then located at its first key, which is where
    /// a reader looks; the event's own mark can point past it).
    Map {
        key: Option<Box<str>>,
        first: bool,
    },
    Seq {
        index: usize,
    },
}

/// `None` as a node: inside a complex (non-scalar) key, where nothing is indexed.
struct Builder {
    loc: Locator,
    stack: Vec<(Option<NodeId>, Frame)>,
    root_seen: bool,
}

fn position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl Builder {
    fn node(&mut self, parent: NodeId, seg: Box<str>) -> NodeId {
        let next = self.loc.nodes.len() as NodeId;
        let id = *self.loc.children.entry((parent, seg)).or_insert(next);
        if id == next {
            self.loc.nodes.push(Node::default());
        }
        id
    }

    /// The node that starts now, advancing the parent's key/index state.
    fn child(&mut self) -> Option<NodeId> {
        let Some((parent, frame)) = self.stack.last_mut() else {
            if std::mem::replace(&mut self.root_seen, true) {
                return None;
            }
            return Some(ROOT);
        };
        let parent = (*parent)?;
        let seg: Box<str> = match frame {
            Frame::Seq { index } => {
                let seg = format!("[{index}]").into();
                *index += 1;
                seg
            }
            Frame::Map { key, .. } => key.take()?,
        };
        Some(self.node(parent, seg))
    }

    fn start(&mut self, mark: Marker) -> Option<NodeId> {
        let id = self.child()?;
        self.loc.nodes[id as usize].value = Some(position(mark));
        Some(id)
    }

    fn open(&mut self, mark: Marker, frame: Frame) -> Result<(), TooDeep> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(TooDeep {
                position: position(mark),
            });
        }
        let awaiting_key = matches!(self.stack.last(), Some((_, Frame::Map { key: None, .. })));
        let id = if awaiting_key { None } else { self.start(mark) };
        if let (Some(id), Frame::Seq { .. }) = (id, &frame) {
            self.loc.nodes[id as usize].is_sequence = true;
        }
        self.stack.push((id, frame));
        Ok(())
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), TooDeep> {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some((
                    parent,
                    Frame::Map {
                        key: key @ None,
                        first,
                    },
                )) = self.stack.last_mut()
                {
                    let p = position(mark);
                    let parent = *parent;
                    *key = Some(value.as_str().into());
                    let first = std::mem::take(first);
                    if let Some(parent) = parent {
                        let id = self.node(parent, value.into());
                        self.loc.nodes[id as usize].key = Some(p);
                        if first && parent != ROOT {
                            self.loc.nodes[parent as usize].value = Some(p);
                        }
                    }
                } else {
                    self.start(mark);
                }
            }
            Event::Alias(_) => {
                self.start(mark);
            }
            Event::MappingStart(..) => self.open(
                mark,
                Frame::Map {
                    key: None,
                    first: true,
                },
            )?,
            Event::SequenceStart(..) => self.open(mark, Frame::Seq { index: 0 })?,
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_block_and_flow() {
        let text = "sources:\n  - name: a\n    metrics:\n      - name: m\n        labels: {app: \"{app}\", pod: x}\n";
        let loc = Locator::new(text).unwrap();
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
