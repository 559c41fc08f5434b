//! A configuration to resolve, walked as the Python objects it is. The reference syntax,
//! its errors and the substitution are the core's (`references::Found`,
//! `references::substitute_text`); this module only goes through dicts, lists and tuples.
//! Converting a whole configuration into JSON and the answer back (what `pythonize` did)
//! made two Rust strings and a Python string of every entry; walked in place, strings with
//! no `$`, numbers, booleans, `None` and every dict key go into the copy as the very
//! objects they are.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTypeInfo;
use serde_json::Value;
use zeroize::Zeroizing;

use ductape::client::Values;
use ductape::references::{self, Found, Segment};
use ductape::{Error, SecretKey};

use crate::errors;

/// How deep a configuration may nest (as deep as JSON the server reads).
const MAX_DEPTH: usize = 128;

/// Every key `config` references, each once, in order of first appearance.
pub(crate) fn references(config: &Bound<'_, PyAny>) -> PyResult<Vec<SecretKey>> {
    let mut found = Found::default();
    visit(config, &mut Trail::default(), &mut |text, trail| {
        found.scan(text, &|| trail.pointer())
    })?;
    Ok(found.into_keys())
}

/// A copy of `config` with every reference replaced by its value in `values`.
pub(crate) fn substitute<'py>(
    config: &Bound<'py, PyAny>,
    values: &Values,
) -> PyResult<Bound<'py, PyAny>> {
    copy(config, &mut Trail::default(), values)
}

/// Where the walk is: the dict keys and list indexes down to the string at hand, written
/// out as a JSON pointer only for an error.
#[derive(Default)]
struct Trail<'py>(Vec<Step<'py>>);

enum Step<'py> {
    Key(Bound<'py, PyString>),
    Index(usize),
}

impl<'py> Trail<'py> {
    fn pointer(&self) -> String {
        let keys: Vec<String> = self
            .0
            .iter()
            .map(|step| match step {
                Step::Key(k) => k.to_string_lossy().into_owned(),
                Step::Index(_) => String::new(),
            })
            .collect();
        references::pointer(self.0.iter().zip(&keys).map(|(step, key)| match step {
            Step::Key(_) => Segment::Key(key),
            Step::Index(i) => Segment::Index(*i),
        }))
    }

    /// One step down, refused past [`MAX_DEPTH`] (a configuration that holds itself
    /// never ends).
    fn push(&mut self, step: Step<'py>) -> PyResult<()> {
        if self.0.len() >= MAX_DEPTH {
            return Err(not_json_like(format!(
                "nested more than {MAX_DEPTH} levels deep"
            )));
        }
        self.0.push(step);
        Ok(())
    }
}

/// What a node of a configuration is to the walk.
enum Node<'a, 'py> {
    /// A string that may hold a reference, as text (read in place: the UTF-8 CPython keeps
    /// for the string, so an ASCII one costs no copy).
    Text(&'a str),
    Dict(&'a Bound<'py, PyDict>),
    /// A list or a tuple (both become lists, as in JSON).
    Items(&'a Bound<'py, PyAny>),
    /// Taken as it is: a string with no `$`, a number, a boolean, `None`.
    Kept,
    /// Something else JSON-like only once converted (a set, a mapping or sequence of
    /// another type, a dataclass): converted to dicts and lists as before, then walked.
    Other,
}

fn node<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> PyResult<Node<'a, 'py>> {
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str()?;
        return Ok(if references::may_reference(text) {
            Node::Text(text)
        } else {
            Node::Kept
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(Node::Dict(d));
    }
    if PyList::is_type_of(obj) || PyTuple::is_type_of(obj) {
        return Ok(Node::Items(obj));
    }
    if obj.is_none()
        || PyBool::is_type_of(obj)
        || PyInt::is_type_of(obj)
        || PyFloat::is_type_of(obj)
    {
        return Ok(Node::Kept);
    }
    Ok(Node::Other)
}

/// `obj` (something [`node`] does not walk) as dicts and lists, or the error naming why it
/// is not JSON-like.
fn converted<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let value: Value = pythonize::depythonize(obj).map_err(|e| not_json_like(e.to_string()))?;
    pythonize::pythonize(obj.py(), &value).map_err(|e| not_json_like(e.to_string()))
}

fn not_json_like(why: String) -> PyErr {
    errors::to_py(Error::invalid_field(format!(
        "arguments must be JSON-like values: {why}"
    )))
}

fn dict_key<'a, 'py>(key: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyString>> {
    key.cast::<PyString>()
        .map_err(|_| not_json_like("dict keys must be strings".to_owned()))
}

/// Calls `f` on every string of `obj` that may hold a reference.
fn visit<'py>(
    obj: &Bound<'py, PyAny>,
    trail: &mut Trail<'py>,
    f: &mut dyn FnMut(&str, &Trail<'py>) -> Result<(), Error>,
) -> PyResult<()> {
    match node(obj)? {
        Node::Text(text) => f(text, trail).map_err(errors::to_py),
        Node::Dict(d) => {
            for (k, v) in d.iter() {
                trail.push(Step::Key(dict_key(&k)?.clone()))?;
                visit(&v, trail, f)?;
                trail.0.pop();
            }
            Ok(())
        }
        Node::Items(items) => {
            for (i, v) in items.try_iter()?.enumerate() {
                trail.push(Step::Index(i))?;
                visit(&v?, trail, f)?;
                trail.0.pop();
            }
            Ok(())
        }
        Node::Kept => Ok(()),
        Node::Other => visit(&converted(obj)?, trail, f),
    }
}

/// A copy of `obj` with its references replaced: new dicts and lists, new strings where a
/// reference or an escape was, every other object itself.
fn copy<'py>(
    obj: &Bound<'py, PyAny>,
    trail: &mut Trail<'py>,
    values: &Values,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    match node(obj)? {
        Node::Text(text) => {
            // A string that is one reference becomes the value's string straight away.
            if let Some(value) = references::substitute_sole(text, &|k| values.get(k)) {
                return Ok(PyString::new(py, value.map_err(errors::to_py)?).into_any());
            }
            // The value passes through Rust on its way to the Python string: zeroized here.
            let out = Zeroizing::new(
                references::substitute_text(text, &|| trail.pointer(), &|k| values.get(k))
                    .map_err(errors::to_py)?,
            );
            Ok(PyString::new(py, &out).into_any())
        }
        Node::Dict(d) => {
            let out = PyDict::new(py);
            for (k, v) in d.iter() {
                let key = dict_key(&k)?;
                trail.push(Step::Key(key.clone()))?;
                out.set_item(key, copy(&v, trail, values)?)?;
                trail.0.pop();
            }
            Ok(out.into_any())
        }
        Node::Items(items) => {
            let mut out = Vec::with_capacity(items.len()?);
            for (i, v) in items.try_iter()?.enumerate() {
                trail.push(Step::Index(i))?;
                out.push(copy(&v?, trail, values)?);
                trail.0.pop();
            }
            Ok(PyList::new(py, out)?.into_any())
        }
        Node::Kept => Ok(obj.clone()),
        Node::Other => copy(&converted(obj)?, trail, values),
    }
}
