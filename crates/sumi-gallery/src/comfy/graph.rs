//! A ComfyUI API graph (the `prompt` chunk): `{"<node id>": {"class_type": ..., "inputs": {...}}}`,
//! where an input that is a link is `["<node id>", <output index>]`.
//!
//! Nothing here trusts the text: a missing node, a link of the wrong shape or a cycle is an
//! answer (`None` or a reason), never a panic or an endless walk.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

/// Most nodes a search visits (the text is at most 16 MiB; real graphs have tens of nodes).
const MAX_VISITS: usize = 100_000;

/// Input names a value node (a seed, number or text node) keeps its value under, tried after
/// the name of the input the value is for.
const VALUE_INPUTS: &[&str] = &[
    "value",
    "seed",
    "noise_seed",
    "int",
    "float",
    "number",
    "text",
    "string",
];

/// The parsed graph.
pub(super) struct Graph {
    nodes: Map<String, Value>,
}

/// One node of the graph.
#[derive(Clone, Copy)]
pub(super) struct Node<'g> {
    /// Its id (the key of the graph object).
    pub id: &'g str,
    /// Its `class_type`.
    pub class: &'g str,
    inputs: Option<&'g Map<String, Value>>,
}

impl Graph {
    /// Parses the text; `None` unless it is a JSON object holding at least one node.
    pub fn parse(text: &str) -> Option<Graph> {
        let Ok(Value::Object(nodes)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let has_node = nodes.iter().any(|(id, v)| as_node(id, v).is_some());
        has_node.then_some(Graph { nodes })
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<Node<'_>> {
        let (id, value) = self.nodes.get_key_value(id)?;
        as_node(id, value)
    }

    /// Every node, by id (numeric ids in numeric order).
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        let mut all: Vec<Node> = self
            .nodes
            .iter()
            .filter_map(|(id, v)| as_node(id, v))
            .collect();
        all.sort_by(|a, b| (a.id.len(), a.id).cmp(&(b.id.len(), b.id)));
        all.into_iter()
    }

    /// The node that the input `name` of `node` is linked to.
    pub fn source(&self, node: Node, name: &str) -> Option<Node<'_>> {
        self.node(&link_target(node.input(name)?)?)
    }

    /// The ids of every node that some node takes an input from.
    pub fn used_ids(&self) -> HashSet<String> {
        self.nodes()
            .flat_map(|n| n.links().filter_map(|(_, target)| target))
            .collect()
    }

    /// The nearest node upstream of `start` (itself included) whose class satisfies `wanted`,
    /// searching breadth-first over every linked input.
    pub fn nearest_upstream<'g>(
        &'g self,
        start: Node<'g>,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<Node<'g>> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            if seen.len() >= MAX_VISITS || !seen.insert(node.id) {
                continue;
            }
            if wanted(node.class) {
                return Some(node);
            }
            for (_, target) in node.links() {
                if let Some(next) = target.and_then(|t| self.node(&t)) {
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// The value of input `name`: written on the node, or kept by the value node it links to.
    /// `Err` says why it cannot be read.
    pub fn value<'g>(&'g self, node: Node<'g>, name: &str) -> Result<&'g Value, String> {
        let Some(v) = node.input(name) else {
            return Err(format!("{} has no {name}", node.label()));
        };
        let Some(target) = link_target(v) else {
            return Ok(v);
        };
        let Some(source) = self.node(&target) else {
            return Err(format!(
                "the {name} of {} links to node {target}, which the graph lacks",
                node.label()
            ));
        };
        std::iter::once(name)
            .chain(VALUE_INPUTS.iter().copied())
            .filter_map(|key| source.input(key))
            .find(|v| link_target(v).is_none() && !v.is_object() && !v.is_array())
            .ok_or_else(|| {
                format!(
                    "the {name} of {} comes from {}, which Sumi does not read",
                    node.label(),
                    source.label()
                )
            })
    }

    /// Input `name` as a whole number.
    pub fn u64_of(&self, node: Node, name: &str) -> Result<u64, String> {
        let v = self.value(node, name)?;
        v.as_u64().ok_or_else(|| {
            format!(
                "the {name} of {} is {v}, not a whole number from 0",
                node.label()
            )
        })
    }

    /// Input `name` as a signed whole number.
    pub fn i64_of(&self, node: Node, name: &str) -> Result<i64, String> {
        let v = self.value(node, name)?;
        v.as_i64()
            .ok_or_else(|| format!("the {name} of {} is {v}, not a whole number", node.label()))
    }

    /// Input `name` as a number.
    pub fn f64_of(&self, node: Node, name: &str) -> Result<f64, String> {
        let v = self.value(node, name)?;
        v.as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("the {name} of {} is {v}, not a number", node.label()))
    }

    /// Input `name` as text.
    pub fn str_of<'g>(&'g self, node: Node<'g>, name: &str) -> Result<&'g str, String> {
        let v = self.value(node, name)?;
        v.as_str()
            .ok_or_else(|| format!("the {name} of {} is {v}, not text", node.label()))
    }
}

impl<'g> Node<'g> {
    /// The raw value of input `name`.
    pub fn input(&self, name: &str) -> Option<&'g Value> {
        self.inputs?.get(name)
    }

    /// Every input that is a link, with the id it points to (`None` when that is malformed).
    fn links(&self) -> impl Iterator<Item = (&'g str, Option<String>)> + 'g {
        self.inputs
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, v)| v.is_array())
            .map(|(k, v)| (k.as_str(), link_target(v)))
    }

    /// The node as a sentence names it: `KSampler (node 3)`.
    pub fn label(&self) -> String {
        format!("{} (node {})", shown(self.class), shown(self.id))
    }
}

/// Nodes are the same when their ids are.
impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl std::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A node, when `value` has the shape of one.
fn as_node<'g>(id: &'g str, value: &'g Value) -> Option<Node<'g>> {
    let obj = value.as_object()?;
    Some(Node {
        id,
        class: obj.get("class_type")?.as_str()?,
        inputs: obj.get("inputs").and_then(Value::as_object),
    })
}

/// The node id a link `["<id>", <index>]` points to (ids written as numbers are accepted too).
fn link_target(v: &Value) -> Option<String> {
    match v.as_array()?.as_slice() {
        [Value::String(id), index] if index.is_u64() => Some(id.clone()),
        [Value::Number(id), index] if index.is_u64() && id.is_u64() => Some(id.to_string()),
        _ => None,
    }
}

/// Text from the graph for a sentence, cut short when long.
pub(super) fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}
