//! [`Params`], the named parameter store, and how parameters meet a tape.
//!
//! Parameters live outside the tape. Each training step binds them onto a freshly
//! cleared tape ([`Params::bind`]), records the forward pass, runs backward, reads the
//! gradients back by name ([`Bound::gradients_into`]) and lets an optimizer update the
//! store. Names keep their insertion order, so iteration, saving and optimizer state
//! all follow the order in which a network was built.
//!
//! # The parameter file
//!
//! [`Params::save`] writes, and [`Params::load`] reads, a plain UTF-8 text file:
//!
//! ```text
//! tapegrad-params 1
//! layer1.weight 2 2 4
//! 1.5e-1 -2.25e0 3e-1 1e0 -7.5e-1 4e-1 1.1e0 -3e-2
//! layer1.bias 2 1 4
//! 0e0 0e0 0e0 0e0
//! ```
//!
//! The first line names the format and its version. Then, for each parameter in order,
//! a header line holds its name, its rank and its axis lengths, and the next line holds
//! its values in row-major order, separated by single spaces, each in the shortest form
//! that reads back to the identical `f64` (so a save/load round trip is exact). Names
//! contain no whitespace. Loading checks every line, and that the file holds exactly the
//! store's names, in order, with the same shapes; any problem is an error and leaves the
//! store as it was.

use crate::backward::Gradients;
use crate::error::{Error, Result};
use crate::parallel::{all_finite, copy as shared_copy};
use crate::shape::Shape;
use crate::tape::Tape;
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;
use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

/// Names to tensors, in insertion order; names are short, so a fast hash suffices.
type NameMap = IndexMap<String, Tensor, FxBuildHasher>;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A layout stamp no store has had: a store takes a fresh one whenever its names,
/// shapes or frozen parameters may have changed, so equal non-zero stamps mean equal
/// names, shapes and frozen parameters, and the checks made at every training step
/// cost one comparison. 0 means unknown.
fn fresh_layout() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The first line of a parameter file.
const MAGIC: &str = "tapegrad-params 1";

/// Named parameter tensors, in insertion order.
///
/// ```
/// use tapegrad::nn::Params;
/// use tapegrad::{Tape, Tensor};
///
/// let mut params = Params::new();
/// params.insert("w", Tensor::vector([0.5, -1.0]))?;
/// params.insert("b", Tensor::scalar(0.25))?;
/// assert_eq!(params.names().collect::<Vec<_>>(), ["w", "b"]);
/// assert!(params.get("nope").is_err());
///
/// // One step: bind, record, backward, read the gradients back by name.
/// let tape = Tape::new();
/// let bound = params.bind(&tape);
/// let (w, b) = (bound.get("w")?, bound.get("b")?);
/// let x = tape.constant_tensor(&Tensor::vector([2.0, 3.0]));
/// let y = (w * x).sum() + b; // 0.5·2 − 1·3 + 0.25
/// assert_eq!(y.item()?, -1.75);
/// let grads = bound.gradients(&y.backward()?)?;
/// assert_eq!(grads.get("w")?, &Tensor::vector([2.0, 3.0]));
/// assert_eq!(grads.get("b")?.item()?, 1.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Params {
    map: NameMap,
    /// One flag per parameter, in the map's order: true when it is frozen (see
    /// [`Params::freeze`]).
    frozen: Vec<bool>,
    /// See [`fresh_layout`]; a clone keeps it until either copy changes.
    layout: u64,
}

/// Two stores are equal when they hold the same names, in the same order, with equal
/// values; which parameters are frozen does not count (files do not record it either).
impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.map == other.map
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Params");
        out.field("map", &self.map);
        if self.frozen.contains(&true) {
            out.field("frozen", &self.frozen_names().collect::<Vec<_>>());
        }
        out.finish()
    }
}

fn invalid(op: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        op: op.to_string(),
        reason: reason.into(),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(invalid(
            "params",
            format!("parameter names are non-empty and contain no whitespace, got {name:?}"),
        ));
    }
    Ok(())
}

impl Params {
    /// An empty store.
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds a parameter at the end. An error, leaving the store unchanged, if the name
    /// is taken, empty or contains whitespace.
    pub fn insert(&mut self, name: impl Into<String>, value: Tensor) -> Result<()> {
        let name = name.into();
        check_name(&name)?;
        if self.map.contains_key(&name) {
            return Err(invalid(
                "params",
                format!("a parameter named {name:?} already exists"),
            ));
        }
        self.map.insert(name, value);
        self.frozen.push(false);
        self.layout = fresh_layout();
        Ok(())
    }

    /// The parameter called `name`; [`Error::UnknownParameter`] if there is none.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| Error::UnknownParameter {
            name: name.to_string(),
        })
    }

    /// The parameter called `name`, mutably; [`Error::UnknownParameter`] if there is
    /// none.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        let slot = self
            .map
            .get_mut(name)
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
            })?;
        // The caller may give the tensor another shape.
        self.layout = fresh_layout();
        Ok(slot)
    }

    /// Replaces the value of an existing parameter with one of the same shape. An
    /// error, leaving the store unchanged, for an unknown name or another shape.
    pub fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        // Not `get_mut`: the shape stays, so the layout does too.
        let slot = self
            .map
            .get_mut(name)
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
            })?;
        if slot.shape() != value.shape() {
            return Err(invalid(
                "params",
                format!(
                    "{name:?} has shape {}, the new value has shape {}",
                    slot.shape(),
                    value.shape()
                ),
            ));
        }
        *slot = value;
        Ok(())
    }

    /// True if a parameter is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The number of parameters (tensors, not numbers; see [`numel`](Params::numel)).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The number of values in all parameters together.
    pub fn numel(&self) -> usize {
        self.map.values().map(Tensor::numel).sum()
    }

    /// The names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Names and values, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Names and mutable values, in insertion order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        // The caller may give a tensor another shape.
        self.layout = fresh_layout();
        self.map.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// Every parameter's values, mutably, in order, each with `true` when it is
    /// trainable: what optimizers update. Shapes cannot change through a slice, so the
    /// layout stamp stays.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = (&mut [f64], bool)> {
        self.map
            .values_mut()
            .map(Tensor::data_mut)
            .zip(self.frozen.iter().map(|frozen| !frozen))
    }

    /// Freezes the parameter called `name`: from the next [`bind`](Params::bind) on it
    /// is recorded as a constant, so backward computes no gradient for it (its entry
    /// in [`ParamGradients`] is zero), and every [`Optimizer`](crate::optim::Optimizer)
    /// leaves it and its state (momentum buffer, moments) as they are — PyTorch's
    /// `requires_grad_(False)`. Its value can still be changed by hand
    /// ([`set`](Params::set)) and by loading a file. Freezing a frozen parameter does
    /// nothing. [`Error::UnknownParameter`], changing nothing, if there is none.
    ///
    /// Which parameters are frozen belongs to the store, not to its values: files and
    /// equality ignore it, and [`load`](Params::load) keeps it.
    ///
    /// ```
    /// use tapegrad::nn::Params;
    /// use tapegrad::optim::{Adam, Optimizer};
    /// use tapegrad::{Tape, Tensor};
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::scalar(3.0))?;
    /// params.insert("b", Tensor::scalar(1.0))?;
    /// params.freeze("b")?;
    /// assert!(!params.is_trainable("b")? && params.is_trainable("w")?);
    /// assert!(params.freeze("nope").is_err());
    ///
    /// let tape = Tape::new();
    /// let bound = params.bind(&tape);
    /// let loss = (bound.get("w")? * bound.get("b")?).powi(2); // (w·b)²
    /// let grads = bound.gradients(&loss.backward()?)?;
    /// assert_eq!(grads.get("w")?.item()?, 6.0); // 2·w·b²
    /// assert_eq!(grads.get("b")?.item()?, 0.0); // a constant: no gradient
    ///
    /// Adam::new(0.1).step(&mut params, &grads)?;
    /// assert_eq!(params.get("b")?.item()?, 1.0); // untouched
    /// assert!((params.get("w")?.item()? - 2.9).abs() < 1e-9);
    /// params.unfreeze("b")?;
    /// assert!(params.is_trainable("b")?);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn freeze(&mut self, name: &str) -> Result<()> {
        self.set_frozen(name, true)
    }

    /// Makes the parameter called `name` trainable again (see
    /// [`freeze`](Params::freeze)); unfreezing a trainable parameter does nothing.
    /// [`Error::UnknownParameter`], changing nothing, if there is none.
    pub fn unfreeze(&mut self, name: &str) -> Result<()> {
        self.set_frozen(name, false)
    }

    /// True unless the parameter called `name` is frozen (see
    /// [`freeze`](Params::freeze)); [`Error::UnknownParameter`] if there is none.
    pub fn is_trainable(&self, name: &str) -> Result<bool> {
        Ok(!self.frozen[self.index_of(name)?])
    }

    /// The names of the frozen parameters, in insertion order.
    ///
    /// ```
    /// use tapegrad::nn::Params;
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// for name in ["a", "b", "c"] {
    ///     params.insert(name, Tensor::scalar(0.0))?;
    /// }
    /// params.freeze("c")?;
    /// params.freeze("a")?;
    /// assert_eq!(params.frozen_names().collect::<Vec<_>>(), ["a", "c"]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn frozen_names(&self) -> impl Iterator<Item = &str> {
        self.names()
            .zip(&self.frozen)
            .filter(|(_, &frozen)| frozen)
            .map(|(name, _)| name)
    }

    /// One flag per parameter, in order: true when it is frozen.
    pub(crate) fn frozen_flags(&self) -> &[bool] {
        &self.frozen
    }

    fn set_frozen(&mut self, name: &str, frozen: bool) -> Result<()> {
        let index = self.index_of(name)?;
        if self.frozen[index] != frozen {
            self.frozen[index] = frozen;
            // A recording made before binds the parameter the other way: the stamp
            // tells a replay to look again.
            self.layout = fresh_layout();
        }
        Ok(())
    }

    /// The values, in order.
    pub(crate) fn tensors(&self) -> impl Iterator<Item = &Tensor> + Clone {
        self.map.values()
    }

    /// The layout stamp (see [`fresh_layout`]).
    pub(crate) fn layout(&self) -> u64 {
        self.layout
    }

    /// Records every parameter on `tape` as a leaf variable, in order, for one step: a
    /// trainable one as a variable, a [frozen](Params::freeze) one as a constant.
    ///
    /// The variables are recorded one after another, so the binding costs no
    /// allocation beyond the tape's own arena.
    pub fn bind<'t, 'p>(&'p self, tape: &'t Tape) -> Bound<'t, 'p> {
        let first = tape.len();
        for (value, &frozen) in self.map.values().zip(&self.frozen) {
            if frozen {
                tape.constant_tensor(value);
            } else {
                tape.tensor(value);
            }
        }
        Bound {
            tape,
            params: self,
            first,
        }
    }

    /// The store in the text format described in the [module docs](self).
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(32 + 24 * self.numel());
        text.push_str(MAGIC);
        text.push('\n');
        for (name, value) in &self.map {
            let dims = value.shape().dims();
            // Writing into a String cannot fail.
            let _ = write!(text, "{name} {}", dims.len());
            for d in dims {
                let _ = write!(text, " {d}");
            }
            text.push('\n');
            for (i, v) in value.data().iter().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                let _ = write!(text, "{v:e}");
            }
            text.push('\n');
        }
        text
    }

    /// A new store read from text in the format described in the [module docs](self);
    /// an error naming the line for anything malformed, and
    /// [`Error::ShapeTooLarge`] for a header whose axis lengths no tensor can have,
    /// found before any values are read.
    ///
    /// ```
    /// use tapegrad::nn::Params;
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::matrix(&[[0.1, 1.0 / 3.0], [-2.5, 1e-300]])?)?;
    /// let text = params.to_text();
    /// assert_eq!(Params::from_text(&text)?, params); // exact round trip
    /// assert!(Params::from_text(&text.replace("2 2 2", "2 2 3")).is_err());
    /// let huge = "tapegrad-params 1\na 2 4294967296 4294967296\n\n";
    /// assert!(matches!(Params::from_text(huge), Err(tapegrad::Error::ShapeTooLarge { .. })));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn from_text(text: &str) -> Result<Params> {
        let op = "params load";
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first.trim_end() == MAGIC => {}
            _ => return Err(invalid(op, format!("line 1: expected {MAGIC:?}"))),
        }
        let mut params = Params::new();
        while let Some((number, header)) = lines.next() {
            if header.trim().is_empty() {
                continue;
            }
            let at = |reason: String| invalid(op, format!("line {number}: {reason}"));
            let mut fields = header.split_whitespace();
            let name = fields.next().unwrap_or_default();
            let rank: usize = fields
                .next()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| at(format!("expected `name rank dims…`, got {header:?}")))?;
            let dims = fields
                .map(|d| d.parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| at(format!("bad axis length: {e}")))?;
            if dims.len() != rank {
                return Err(at(format!("rank {rank} but {} axis lengths", dims.len())));
            }
            let shape = Shape::from(dims);
            // Before the values are read: a header's lengths may multiply past any
            // tensor, or wrap around to the count of a short line.
            shape.check_size(&format!("{op}: line {number}"))?;
            let (number, line) = lines
                .next()
                .ok_or_else(|| at(format!("no values follow {name:?}")))?;
            let values = line
                .split_whitespace()
                .map(str::parse::<f64>)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| invalid(op, format!("line {number}: bad value: {e}")))?;
            if values.len() != shape.numel() {
                return Err(invalid(
                    op,
                    format!(
                        "line {number}: {name:?} of shape {shape} needs {} values, found {}",
                        shape.numel(),
                        values.len()
                    ),
                ));
            }
            params
                .insert(name, Tensor::new(values, shape)?)
                .map_err(|e| at(e.to_string()))?;
        }
        Ok(params)
    }

    /// Replaces every value with the one in `text`, which must hold exactly this
    /// store's names, in order, with the same shapes. Any problem is an error and
    /// leaves the store unchanged. Frozen parameters stay frozen.
    pub fn load_text(&mut self, text: &str) -> Result<()> {
        let loaded = Params::from_text(text)?;
        let op = "params load";
        if loaded.len() != self.len() {
            return Err(invalid(
                op,
                format!(
                    "the file holds {} parameters, the store {}",
                    loaded.len(),
                    self.len()
                ),
            ));
        }
        for ((name, value), (want, current)) in loaded.iter().zip(self.iter()) {
            if name != want || value.shape() != current.shape() {
                return Err(invalid(
                    op,
                    format!(
                        "the file has {name:?} of shape {} where the store has {want:?} of shape {}",
                        value.shape(),
                        current.shape()
                    ),
                ));
            }
        }
        let frozen = std::mem::take(&mut self.frozen);
        *self = loaded;
        self.frozen = frozen;
        Ok(())
    }

    /// Writes the store to `path` in the text format of the [module docs](self).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_text())
            .map_err(|e| invalid("params save", format!("{}: {e}", path.display())))
    }

    /// Replaces every value with the one saved in `path` (see
    /// [`load_text`](Params::load_text)). An unreadable, corrupt or mismatched file is
    /// an error and leaves the store unchanged.
    ///
    /// ```
    /// use tapegrad::nn::Params;
    /// use tapegrad::Tensor;
    /// let path = std::env::temp_dir().join(format!("tapegrad-doc-{}.params", std::process::id()));
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::vector([1.5, -2.0]))?;
    /// params.save(&path)?;
    /// params.set("w", Tensor::vector([0.0, 0.0]))?;
    /// params.load(&path)?;
    /// assert_eq!(params.get("w")?, &Tensor::vector([1.5, -2.0]));
    /// std::fs::write(&path, "tapegrad-params 1\nw 1 2\n1.5 oops\n").unwrap();
    /// assert!(params.load(&path).is_err());
    /// assert_eq!(params.get("w")?, &Tensor::vector([1.5, -2.0])); // untouched
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("params load", format!("{}: {e}", path.display())))?;
        self.load_text(&text)
    }

    /// The position of `name` in insertion order.
    pub(crate) fn index_of(&self, name: &str) -> Result<usize> {
        self.map
            .get_index_of(name)
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
            })
    }
}

/// The parameters of a [`Params`] store recorded on a tape for one step: look their
/// variables up by name, and read their gradients back after backward.
///
/// Made by [`Params::bind`]. It borrows both the tape and the store, so the tape cannot
/// be cleared and the store cannot be updated while it lives: drop it (end its scope)
/// before the optimizer step.
#[derive(Clone, Copy)]
pub struct Bound<'t, 'p> {
    tape: &'t Tape,
    params: &'p Params,
    /// The node id of the first parameter; the others follow in order.
    first: usize,
}

impl<'t, 'p> Bound<'t, 'p> {
    /// The variable of the parameter called `name` (a constant for a
    /// [frozen](Params::freeze) parameter); [`Error::UnknownParameter`] if there is none.
    pub fn get(&self, name: &str) -> Result<Var<'t>> {
        let index = self.params.index_of(name)?;
        Ok(self.var_at(index))
    }

    /// The parameters of `params` as bound earlier on `tape`, their leaves starting at
    /// node `first`: for a training loop that replays one recording.
    pub(crate) fn at(tape: &'t Tape, params: &'p Params, first: usize) -> Bound<'t, 'p> {
        Bound {
            tape,
            params,
            first,
        }
    }

    /// The node id of the first parameter's leaf.
    pub(crate) fn first(&self) -> usize {
        self.first
    }

    fn var_at(&self, index: usize) -> Var<'t> {
        let id = u32::try_from(self.first + index).expect("a tape holds at most 2^32 nodes");
        Var::new(self.tape, id)
    }

    /// The tape the parameters are recorded on (to put inputs and targets on it).
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }

    /// The store that was bound.
    pub fn params(&self) -> &'p Params {
        self.params
    }

    /// Names and variables, in insertion order.
    pub fn vars(&self) -> impl Iterator<Item = (&'p str, Var<'t>)> + '_ {
        self.params
            .names()
            .enumerate()
            .map(move |(i, name)| (name, self.var_at(i)))
    }

    /// The gradient of every parameter, by name, from the result of a backward pass.
    pub fn gradients(&self, grads: &Gradients) -> Result<ParamGradients> {
        let mut out = ParamGradients::default();
        self.gradients_into(grads, &mut out)?;
        Ok(out)
    }

    /// [`gradients`](Bound::gradients) into an existing [`ParamGradients`], reusing its
    /// memory: after the first step of a training loop this allocates nothing.
    pub fn gradients_into(&self, grads: &Gradients, out: &mut ParamGradients) -> Result<()> {
        out.shape_like(self.params);
        // Until every slot is filled, the gradients belong to no store.
        out.layout = 0;
        out.finite = false;
        let slots = out.map.values_mut().map(Tensor::data_mut);
        out.finite = grads.consecutive_into(self.tape, self.first, slots)?;
        out.layout = self.params.layout;
        Ok(())
    }
}

impl std::fmt::Debug for Bound<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("names", &self.params.names().collect::<Vec<_>>())
            .field("first", &self.first)
            .finish()
    }
}

/// The gradient of every parameter of a [`Params`] store, by name, in the store's
/// order: what an [`Optimizer`](crate::optim::Optimizer) consumes.
#[derive(Clone, Default)]
pub struct ParamGradients {
    map: NameMap,
    /// The layout stamp of the store these gradients were read for; 0 when unknown.
    layout: u64,
    /// True when every number is known to be finite: the copy that filled them from a
    /// backward pass tests each piece while it is in cache, so that neither the
    /// training step nor the optimizer reads the gradients again to check them.
    finite: bool,
}

impl PartialEq for ParamGradients {
    fn eq(&self, other: &ParamGradients) -> bool {
        self.map == other.map
    }
}

impl std::fmt::Debug for ParamGradients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGradients")
            .field("map", &self.map)
            .finish()
    }
}

impl ParamGradients {
    /// Gradients from explicit values, in order (for optimizers used outside a tape).
    /// An error for a duplicate or malformed name.
    ///
    /// ```
    /// use tapegrad::nn::ParamGradients;
    /// use tapegrad::Tensor;
    /// let g = ParamGradients::from_pairs([("w", Tensor::vector([3.0, 4.0]))])?;
    /// assert_eq!(g.norm(), 5.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn from_pairs<S: Into<String>>(
        pairs: impl IntoIterator<Item = (S, Tensor)>,
    ) -> Result<ParamGradients> {
        let mut store = Params::new();
        for (name, value) in pairs {
            store.insert(name, value)?;
        }
        Ok(ParamGradients {
            map: store.map,
            layout: 0,
            finite: false,
        })
    }

    /// The gradient of the parameter called `name`; [`Error::UnknownParameter`] if
    /// there is none.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| Error::UnknownParameter {
            name: name.to_string(),
        })
    }

    /// Names and gradients, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The Euclidean norm of all gradients together, √(Σ g²).
    pub fn norm(&self) -> f64 {
        self.map
            .values()
            .flat_map(|g| g.data())
            .map(|g| g * g)
            .sum::<f64>()
            .sqrt()
    }

    /// The first gradient element that is NaN or ±∞, as the parameter's name, the
    /// element's index and its value; `None` when every gradient is finite.
    ///
    /// ```
    /// use tapegrad::nn::ParamGradients;
    /// use tapegrad::Tensor;
    /// let g = ParamGradients::from_pairs([
    ///     ("w", Tensor::vector([1.0, 2.0])),
    ///     ("b", Tensor::vector([0.0, f64::NEG_INFINITY])),
    /// ])?;
    /// assert_eq!(g.first_non_finite(), Some(("b", 1, f64::NEG_INFINITY)));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn first_non_finite(&self) -> Option<(&str, usize, f64)> {
        self.map
            .iter()
            .filter(|(_, g)| !all_finite(g.data()))
            .find_map(|(name, g)| {
                let (index, &value) = g.data().iter().enumerate().find(|(_, v)| !v.is_finite())?;
                Some((name.as_str(), index, value))
            })
    }

    /// [`Error::NonFiniteGradient`] for op `op` if a gradient is not finite (see
    /// [`first_non_finite`](Self::first_non_finite)).
    #[inline]
    pub(crate) fn check_finite(&self, op: &str) -> Result<()> {
        if self.finite {
            Ok(())
        } else {
            self.look_for_non_finite(op)
        }
    }

    /// [`check_finite`](Self::check_finite) when nothing is known: a look at every
    /// number.
    #[inline(never)]
    fn look_for_non_finite(&self, op: &str) -> Result<()> {
        match self.first_non_finite() {
            None => Ok(()),
            Some((name, index, value)) => Err(Error::NonFiniteGradient {
                op: op.to_string(),
                name: name.to_string(),
                index,
                value,
            }),
        }
    }

    /// [`check_finite`](Self::check_finite), remembering a pass for the optimizer the
    /// gradients go to next.
    #[inline]
    pub(crate) fn vouch_finite(&mut self, op: &str) -> Result<()> {
        if !self.finite {
            self.look_for_non_finite(op)?;
            self.finite = true;
        }
        Ok(())
    }

    /// True if these gradients have the names, order and shapes of `params`.
    pub fn matches(&self, params: &Params) -> bool {
        (self.layout != 0 && self.layout == params.layout)
            || self.map.len() == params.map.len()
                && self
                    .map
                    .iter()
                    .zip(&params.map)
                    .all(|((a, ga), (b, pb))| a == b && ga.shape() == pb.shape())
    }

    /// Gives this store the names, order and shapes of `params` (as zeros) unless it
    /// has them already.
    fn shape_like(&mut self, params: &Params) {
        if !self.matches(params) {
            self.map = params
                .iter()
                .map(|(name, value)| (name.to_string(), Tensor::zeros(value.shape().clone())))
                .collect();
        }
    }

    /// Fills these gradients for `params` from `block`, the gradients of every parameter
    /// one after another in the store's order.
    ///
    /// # Panics
    /// If `block` is shorter than the parameters.
    pub(crate) fn fill(&mut self, params: &Params, block: &[f64]) {
        self.shape_like(params);
        let mut from = 0;
        for g in self.map.values_mut().map(Tensor::data_mut) {
            shared_copy(g, &block[from..from + g.len()]);
            from += g.len();
        }
        // One test of the whole block costs less than one per gradient when they are
        // small, as where a whole recording is replayed each step.
        self.finite = all_finite(&block[..from]);
        self.layout = params.layout;
    }

    /// The gradients in order, as views.
    pub(crate) fn views(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.map.values().map(Tensor::view)
    }
}

// Parameter files in the safetensors format.

/// The `__metadata__` key under which tapegrad records the parameters' order (the
/// format stores tensors in an order of its own).
#[cfg(feature = "safetensors")]
const ORDER_KEY: &str = "tapegrad.order";

/// A parameter seen by the `safetensors` crate: `F64`, its shape, its values as
/// little-endian bytes.
#[cfg(feature = "safetensors")]
struct F64View<'a>(&'a Tensor);

#[cfg(feature = "safetensors")]
impl safetensors::View for F64View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F64
    }
    fn shape(&self) -> &[usize] {
        self.0.shape().dims()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.0.data().iter().flat_map(|v| v.to_le_bytes()).collect()
    }
    fn data_len(&self) -> usize {
        8 * self.0.numel()
    }
}

/// The values of a tensor of a safetensors file, as `f64`: `F64` as it is, `F32`
/// widened (exactly); other types are an error.
#[cfg(feature = "safetensors")]
fn safetensors_values(
    op: &str,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<Vec<f64>> {
    use safetensors::Dtype;
    let bytes = view.data();
    match view.dtype() {
        Dtype::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
            .collect()),
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("chunks of 4 bytes"))))
            .collect()),
        other => Err(invalid(
            op,
            format!("{name:?} has dtype {other}; tapegrad reads F64 and F32"),
        )),
    }
}

/// Saving and loading in the [safetensors](https://github.com/huggingface/safetensors)
/// format, which PyTorch, candle, JAX and NumPy read and write (feature `safetensors`,
/// on by default).
///
/// A file is an 8-byte little-endian header length N, N bytes of JSON header mapping
/// each name to its `dtype`, `shape` and `data_offsets`, then the values. tapegrad
/// writes every parameter as `F64` with its name and shape, and records the
/// parameters' order in the header's `__metadata__` (under `tapegrad.order`), since
/// the format keeps tensors in an order of its own. It reads `F64` and `F32` (widened
/// exactly) tensors.
///
/// ```
/// use tapegrad::nn::Params;
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("layer1.weight", Tensor::matrix(&[[0.1, -2.5], [1.0 / 3.0, 4.0]])?)?;
/// params.insert("layer1.bias", Tensor::vector([0.5, -0.25]))?;
/// let bytes = params.to_safetensors()?;
/// let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
/// let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
/// assert!(header.contains(r#""layer1.bias":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}"#));
/// assert_eq!(bytes.len(), 8 + header_len + 6 * 8);
///
/// let back = Params::from_safetensors(&bytes)?;
/// assert_eq!(back.names().collect::<Vec<_>>(), ["layer1.weight", "layer1.bias"]);
/// assert_eq!(back, params);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[cfg(feature = "safetensors")]
impl Params {
    /// The store as the bytes of a safetensors file, every parameter as `F64`.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let order = self.names().collect::<Vec<_>>().join(" ");
        // Collected into whichever map the crate takes (std's, or hashbrown's without
        // its `std` feature).
        let metadata = std::iter::once((ORDER_KEY.to_string(), order)).collect();
        safetensors::serialize(
            self.iter().map(|(name, value)| (name, F64View(value))),
            Some(metadata),
        )
        .map_err(|e| invalid("params save_safetensors", e.to_string()))
    }

    /// A new store from the bytes of a safetensors file, in the order recorded by
    /// [`to_safetensors`](Params::to_safetensors), or else in the order of the values
    /// in the file. An error for a malformed file, a type other than `F64` or `F32`,
    /// or a name that is empty or contains whitespace.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Params> {
        let op = "params load_safetensors";
        let file = |e: safetensors::SafeTensorError| invalid(op, e.to_string());
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).map_err(file)?;
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(file)?;
        let mut names = metadata.offset_keys();
        if let Some(order) = metadata.metadata().as_ref().and_then(|m| m.get(ORDER_KEY)) {
            let recorded: Vec<String> = order.split_whitespace().map(String::from).collect();
            let mut sorted = recorded.clone();
            sorted.sort();
            let mut present = names.clone();
            present.sort();
            if sorted == present {
                names = recorded;
            }
        }
        let mut params = Params::new();
        for name in names {
            let view = tensors.tensor(&name).map_err(file)?;
            let values = safetensors_values(op, &name, &view)?;
            let value = Tensor::new(values, Shape::new(view.shape()))
                .map_err(|e| invalid(op, format!("{name:?}: {e}")))?;
            params
                .insert(name, value)
                .map_err(|e| invalid(op, e.to_string()))?;
        }
        Ok(params)
    }

    /// Writes the store to `path` as a safetensors file.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors()?;
        std::fs::write(path, bytes).map_err(|e| {
            invalid(
                "params save_safetensors",
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// A new store read from the safetensors file at `path` (see
    /// [`from_safetensors`](Params::from_safetensors)).
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Params> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            invalid(
                "params load_safetensors",
                format!("{}: {e}", path.display()),
            )
        })?;
        Params::from_safetensors(&bytes)
    }

    /// Replaces every value with the one in the safetensors file at `path`, which must
    /// hold exactly this store's names (in any order) with the same shapes: the rule of
    /// [`load`](Params::load). An unreadable, corrupt or mismatched file is an error
    /// and leaves the store unchanged.
    ///
    /// ```
    /// use tapegrad::nn::Params;
    /// use tapegrad::Tensor;
    /// let path = std::env::temp_dir().join(format!("tapegrad-doc-{}.safetensors", std::process::id()));
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::vector([1.5, -2.0]))?;
    /// params.save_safetensors(&path)?;
    /// params.set("w", Tensor::vector([0.0, 0.0]))?;
    /// params.load_safetensors(&path)?;
    /// assert_eq!(params.get("w")?, &Tensor::vector([1.5, -2.0]));
    ///
    /// let mut other = Params::new();
    /// other.insert("w", Tensor::vector([7.0, 7.0, 7.0]))?; // another shape
    /// assert!(other.load_safetensors(&path).is_err());
    /// assert_eq!(other.get("w")?, &Tensor::vector([7.0, 7.0, 7.0])); // untouched
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn load_safetensors(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let loaded = Params::read_safetensors(path)?;
        let op = "params load_safetensors";
        if loaded.len() != self.len() {
            return Err(invalid(
                op,
                format!(
                    "the file holds {} tensors, the store {} parameters",
                    loaded.len(),
                    self.len()
                ),
            ));
        }
        for (name, current) in self.iter() {
            let value = loaded
                .get(name)
                .map_err(|_| invalid(op, format!("the file has no tensor {name:?}")))?;
            if value.shape() != current.shape() {
                return Err(invalid(
                    op,
                    format!(
                        "the file has {name:?} of shape {} where the store has shape {}",
                        value.shape(),
                        current.shape()
                    ),
                ));
            }
        }
        // Every name and shape checked: now the values change, in the store's order.
        for (name, value) in self.map.iter_mut() {
            value
                .data_mut()
                .copy_from_slice(loaded.get(name).expect("checked above").data());
        }
        Ok(())
    }
}

// Serde support (feature `serde`).

/// A tensor as serde sees it: `{"shape": [..], "data": [..]}`, the values in row-major
/// order.
#[cfg(feature = "serde")]
#[derive(serde::Serialize)]
struct TensorOut<'a> {
    shape: &'a [usize],
    data: &'a [f64],
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct TensorIn {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// The shape of axis lengths read by serde, refused when its axes other than the empty
/// ones multiply past a `usize`: such a shape can hold no tensor.
#[cfg(feature = "serde")]
fn deserialized_shape<E: serde::de::Error>(dims: Vec<usize>) -> std::result::Result<Shape, E> {
    let counted = dims
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d));
    match counted {
        Some(_) => Ok(Shape::from(dims)),
        None => Err(E::custom(format!(
            "the shape {dims:?} has more elements than a usize can count"
        ))),
    }
}

/// With the `serde` feature, a tensor serializes as `{"shape": [..], "data": [..]}` and
/// deserializes from it, checking that the data fit the shape. serde_json writes every
/// finite `f64` in the shortest form that reads back identical, and reads it back
/// identical with its `float_roundtrip` feature (without it, to within one unit in the
/// last place); NaN and ±∞ have no JSON form.
///
/// ```
/// use tapegrad::Tensor;
/// let t = Tensor::matrix(&[[0.1, -2.0], [1.0 / 3.0, 4.0]])?;
/// let json = serde_json::to_string(&t).unwrap();
/// assert_eq!(json, r#"{"shape":[2,2],"data":[0.1,-2.0,0.3333333333333333,4.0]}"#);
/// assert_eq!(serde_json::from_str::<Tensor>(&json).unwrap(), t);
/// assert!(serde_json::from_str::<Tensor>(r#"{"shape":[3],"data":[1.0]}"#).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[cfg(feature = "serde")]
impl serde::Serialize for Tensor {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let out = TensorOut {
            shape: self.shape().dims(),
            data: self.data(),
        };
        serde::Serialize::serialize(&out, serializer)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Tensor {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Tensor, D::Error> {
        let TensorIn { shape, data } = serde::Deserialize::deserialize(deserializer)?;
        Tensor::new(data, deserialized_shape::<D::Error>(shape)?).map_err(serde::de::Error::custom)
    }
}

/// With the `serde` feature, a shape serializes as the list of its axis lengths, and
/// one whose element count overflows a `usize` is refused.
///
/// ```
/// use tapegrad::Shape;
/// let shape = Shape::new(&[2, 3]);
/// assert_eq!(serde_json::to_string(&shape).unwrap(), "[2,3]");
/// assert_eq!(serde_json::from_str::<Shape>("[2,3]").unwrap(), shape);
/// assert!(serde_json::from_str::<Shape>("[]").unwrap().is_scalar());
/// assert!(serde_json::from_str::<Shape>("[4294967296, 4294967296, 16]").is_err());
/// ```
#[cfg(feature = "serde")]
impl serde::Serialize for Shape {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(self.dims(), serializer)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Shape, D::Error> {
        let dims: Vec<usize> = serde::Deserialize::deserialize(deserializer)?;
        deserialized_shape(dims)
    }
}

/// With the `serde` feature, a store serializes as a map from names to tensors, in the
/// store's order, and deserializes from one, keeping its order and refusing a
/// duplicate or malformed name.
///
/// ```
/// use tapegrad::nn::Params;
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// params.insert("w", Tensor::vector([1.5, -2.0]))?;
/// params.insert("b", Tensor::scalar(0.25))?;
/// let json = serde_json::to_string(&params).unwrap();
/// assert_eq!(json, r#"{"w":{"shape":[2],"data":[1.5,-2.0]},"b":{"shape":[],"data":[0.25]}}"#);
/// let back: Params = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.names().collect::<Vec<_>>(), ["w", "b"]);
/// assert_eq!(back, params);
/// assert!(serde_json::from_str::<Params>(r#"{"a b":{"shape":[],"data":[1.0]}}"#).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[cfg(feature = "serde")]
impl serde::Serialize for Params {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Params, D::Error> {
        struct ParamsVisitor;
        impl<'de> serde::de::Visitor<'de> for ParamsVisitor {
            type Value = Params;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map from parameter names to tensors")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Params, A::Error> {
                let mut params = Params::new();
                while let Some((name, value)) = map.next_entry::<String, Tensor>()? {
                    params
                        .insert(name, value)
                        .map_err(serde::de::Error::custom)?;
                }
                Ok(params)
            }
        }
        deserializer.deserialize_map(ParamsVisitor)
    }
}
