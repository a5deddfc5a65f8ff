//! The training loop: one step records a fresh graph on one reused tape.
//!
//! A [`Trainer`] owns the tape, the gradient arena and the batch buffers. Each
//! [`step`](Trainer::step) clears the tape (keeping its memory), binds the parameters,
//! records the loss through the caller's closure, runs backward into the reused
//! [`Gradients`], reads the parameters' gradients back and hands them to the optimizer.
//! After the first step of a given batch shape, a step allocates nothing of its own.
//!
//! A loss whose graph and data do not change from step to step (full-batch training)
//! can instead be recorded once with [`record`](Trainer::record) and replayed by each
//! [`replay_step`](Trainer::replay_step), which skips the recording.
//!
//! A loss that comes out NaN or infinite, or a finite loss with a gradient that does
//! not ([`Error::NonFiniteGradient`], naming the parameter), stops training with an
//! error before the update, so the parameters keep their last finite values.

use super::params::{Bound, ParamGradients, Params};
use crate::backward::Gradients;
use crate::data::{Batches, Dataset};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::shape::Shape;
use crate::tape::{LeafBlock, NodeId, Tape};
use crate::tensor::{Tensor, TensorRef};
use crate::var::Var;

/// One batch, recorded on the step's tape.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'t, 'b> {
    /// The batch's inputs, `[B, …]`, a constant on the tape.
    pub inputs: Var<'t>,
    /// The batch's targets, `[B, …]`, a constant on the tape (the labels as numbers,
    /// `[B]`, for a classification data set).
    pub targets: Var<'t>,
    /// The batch's class labels (empty unless the data set has labels).
    pub labels: &'b [usize],
    /// The rows of the data set in this batch.
    pub indices: &'b [usize],
}

/// The losses of a training run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The loss of every step, measured on the step's batch before its update.
    pub steps: Vec<f64>,
    /// One value per epoch: the average of its step losses weighted by batch size —
    /// for a loss that is a mean over the batch, the mean loss over the epoch's samples
    /// as training saw them.
    pub epochs: Vec<f64>,
}

impl History {
    /// The loss of the last epoch, if any.
    pub fn last(&self) -> Option<f64> {
        self.epochs.last().copied()
    }
}

/// A training loop on one reused tape.
///
/// ```
/// use tapegrad::data::{Batches, Batching, Dataset};
/// use tapegrad::nn::{init, Activation, Mlp, Params, Trainer};
/// use tapegrad::optim::Sgd;
/// use tapegrad::Tensor;
///
/// // Fit y = 2x − 1 with one linear unit, full batch.
/// let x = Tensor::new(vec![-1.0, 0.0, 1.0, 2.0], [4, 1])?;
/// let y = x.map(|x| 2.0 * x - 1.0);
/// let data = Dataset::new(x, y)?;
/// let mut params = Params::new();
/// let net = Mlp::builder(1).layer(1, Activation::Identity).build(&mut params, &mut init::rng(0))?;
/// let mut batches = Batches::new(data.len(), Batching::Full, 0)?;
/// let history = Trainer::new().fit(&mut params, &mut Sgd::new(0.1), &data, &mut batches, 500, |p, b| {
///     net.forward(p, b.inputs)?.try_mse(b.targets)
/// })?;
/// assert!(history.last().unwrap() < 1e-12);
/// assert!((params.get("layer1.weight")?.item()? - 2.0).abs() < 1e-6);
/// assert!((params.get("layer1.bias")?.item()? - -1.0).abs() < 1e-6);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Trainer {
    tape: Tape,
    gradients: Gradients,
    param_gradients: ParamGradients,
    /// The loss recorded by `record`, while the tape still holds it.
    recording: Option<Recording>,
    inputs: Vec<f64>,
    targets: Vec<f64>,
    labels: Vec<usize>,
}

/// A loss recorded on the trainer's tape for replay.
#[derive(Debug)]
struct Recording {
    /// The node of the first parameter's leaf; the others follow in order.
    first: usize,
    /// The loss node.
    loss: NodeId,
    /// The parameters' names and shapes when recorded: replay needs the same store.
    layout: Vec<(String, Shape)>,
    /// Which parameters were frozen (bound as constants) when recorded.
    frozen: Vec<bool>,
    /// The store's layout stamp when recorded: while it is unchanged, so are the names,
    /// shapes and frozen parameters.
    stamp: u64,
    /// The parameters' leaves when their values, and gradients, lie in one block (see
    /// `Tape::leaf_block`).
    block: Option<LeafBlock>,
}

impl Recording {
    /// True if `params` has the names, shapes and frozen parameters the recording was
    /// made with.
    fn fits(&self, params: &Params) -> bool {
        (self.stamp != 0 && self.stamp == params.layout())
            || params.len() == self.layout.len()
                && params.frozen_flags() == self.frozen.as_slice()
                && params
                    .iter()
                    .zip(&self.layout)
                    .all(|((name, value), (n, shape))| name == n && value.shape() == shape)
    }
}

/// The part of a step between recording and update: checks that `loss` (recorded with
/// `bound`) is finite, backpropagates and reads the parameters' gradients. Returns the
/// loss.
fn backpropagate(
    loss: Var<'_>,
    bound: &Bound<'_, '_>,
    gradients: &mut Gradients,
    param_gradients: &mut ParamGradients,
) -> Result<f64> {
    let value = loss.item()?;
    if !value.is_finite() {
        return Err(diverged(value));
    }
    loss.backward_into(gradients)?;
    bound.gradients_into(gradients, param_gradients)?;
    param_gradients.vouch_finite("train")?;
    Ok(value)
}

fn diverged(loss: f64) -> Error {
    Error::Invalid {
        op: "train".into(),
        reason: format!(
            "the loss is {loss}: training diverged (try a smaller learning rate); \
             the parameters keep their values from before this step"
        ),
    }
}

impl Trainer {
    /// A trainer with an empty tape.
    pub fn new() -> Trainer {
        Trainer::default()
    }

    /// One training step: records `loss(params bound on the tape)` on the cleared tape,
    /// backpropagates, and lets `optimizer` update `params`. Returns the loss before
    /// the update.
    ///
    /// An error, leaving `params` and the optimizer's state unchanged, when the closure
    /// fails, the loss is not a scalar or not finite, a parameter's gradient is not
    /// finite ([`Error::NonFiniteGradient`]), or the optimizer refuses the step.
    ///
    /// ```
    /// use tapegrad::nn::{Params, Trainer};
    /// use tapegrad::optim::Sgd;
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::scalar(3.0))?;
    /// let mut trainer = Trainer::new();
    /// let mut sgd = Sgd::new(0.25);
    /// let loss = trainer.step(&mut params, &mut sgd, |p| Ok(p.get("w")?.powi(2)))?;
    /// assert_eq!(loss, 9.0);
    /// assert_eq!(params.get("w")?.item()?, 1.5); // 3 − 0.25·6
    /// assert_eq!(trainer.gradients().get("w")?.item()?, 6.0);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn step<O, F>(&mut self, params: &mut Params, optimizer: &mut O, loss: F) -> Result<f64>
    where
        O: Optimizer + ?Sized,
        F: for<'t, 'p> FnOnce(&Bound<'t, 'p>) -> Result<Var<'t>>,
    {
        self.tape.clear();
        self.recording = None;
        let value = {
            let bound = params.bind(&self.tape);
            let loss = loss(&bound)?;
            backpropagate(loss, &bound, &mut self.gradients, &mut self.param_gradients)?
        };
        optimizer.step(params, &self.param_gradients)?;
        Ok(value)
    }

    /// Trains for `epochs` epochs over `data` in the order `batches` gives, one step
    /// per batch, and returns the loss history. `loss` records the loss of one batch.
    ///
    /// An error when `batches` was made for another number of samples, or any step
    /// fails; the steps before the failing one stay applied.
    pub fn fit<O, F>(
        &mut self,
        params: &mut Params,
        optimizer: &mut O,
        data: &Dataset,
        batches: &mut Batches,
        epochs: usize,
        mut loss: F,
    ) -> Result<History>
    where
        O: Optimizer + ?Sized,
        F: for<'t, 'p, 'b> FnMut(&Bound<'t, 'p>, &Batch<'t, 'b>) -> Result<Var<'t>>,
    {
        if batches.len() != data.len() {
            return Err(Error::Invalid {
                op: "train".into(),
                reason: format!(
                    "the batches cover {} samples but the data set holds {}",
                    batches.len(),
                    data.len()
                ),
            });
        }
        let mut history = History {
            steps: Vec::with_capacity(epochs * batches.batches_per_epoch()),
            epochs: Vec::with_capacity(epochs),
        };
        for _ in 0..epochs {
            let mut weighted = 0.0;
            for indices in batches.epoch() {
                let value = self.fit_step(params, optimizer, data, indices, &mut loss)?;
                history.steps.push(value);
                weighted += value * indices.len() as f64;
            }
            history.epochs.push(weighted / data.len() as f64);
        }
        Ok(history)
    }

    /// One step of [`fit`](Trainer::fit) on the rows `indices`.
    fn fit_step<O, F>(
        &mut self,
        params: &mut Params,
        optimizer: &mut O,
        data: &Dataset,
        indices: &[usize],
        loss: &mut F,
    ) -> Result<f64>
    where
        O: Optimizer + ?Sized,
        F: for<'t, 'p, 'b> FnMut(&Bound<'t, 'p>, &Batch<'t, 'b>) -> Result<Var<'t>>,
    {
        // The whole data set in order needs no copy: its tensors go on the tape as they are.
        let whole = indices.len() == data.len() && indices.iter().enumerate().all(|(k, &i)| k == i);
        let (input_shape, target_shape) = if whole {
            (
                data.inputs().shape().clone(),
                data.targets().shape().clone(),
            )
        } else {
            data.gather(
                indices,
                &mut self.inputs,
                &mut self.targets,
                &mut self.labels,
            )
        };
        let (inputs, targets, labels): (&[f64], &[f64], &[usize]) = if whole {
            (
                data.inputs().data(),
                data.targets().data(),
                data.labels().unwrap_or_default(),
            )
        } else {
            (&self.inputs, &self.targets, &self.labels)
        };
        self.tape.clear();
        self.recording = None;
        let value = {
            let bound = params.bind(&self.tape);
            let batch = Batch {
                inputs: self.tape.leaf(TensorRef::new(inputs, &input_shape)?, false),
                targets: self
                    .tape
                    .leaf(TensorRef::new(targets, &target_shape)?, false),
                labels,
                indices,
            };
            let loss = loss(&bound, &batch)?;
            backpropagate(loss, &bound, &mut self.gradients, &mut self.param_gradients)?
        };
        optimizer.step(params, &self.param_gradients)?;
        Ok(value)
    }

    /// The parameters' gradients of the last step.
    pub fn gradients(&self) -> &ParamGradients {
        &self.param_gradients
    }

    /// Records `loss(params bound on the tape)` once, for
    /// [`replay_step`](Trainer::replay_step) to replay at every step.
    ///
    /// Replay re-evaluates the recorded graph at the parameters' new values, so the
    /// graph must not depend on them (no `if` on a value; see [`Tape::replay`]) and
    /// the data it captured stay as recorded: this is for full-batch training, like
    /// the lecture's XOR network. [`step`](Trainer::step) and [`fit`](Trainer::fit)
    /// record afresh and drop the recording.
    ///
    /// An error, with nothing recorded, when the closure fails or the loss is not a
    /// scalar.
    pub fn record<F>(&mut self, params: &Params, loss: F) -> Result<()>
    where
        F: for<'t, 'p> FnOnce(&Bound<'t, 'p>) -> Result<Var<'t>>,
    {
        self.tape.clear();
        self.recording = None;
        let (first, loss) = {
            let bound = params.bind(&self.tape);
            let loss = loss(&bound)?;
            let shape = loss.shape();
            if shape.numel() != 1 {
                return Err(Error::NonScalarBackward { shape });
            }
            (bound.first(), loss.id())
        };
        let layout = params
            .iter()
            .map(|(name, value)| (name.to_string(), value.shape().clone()))
            .collect();
        self.recording = Some(Recording {
            first,
            loss,
            layout,
            frozen: params.frozen_flags().to_vec(),
            stamp: params.layout(),
            block: self.tape.leaf_block(first, params.len()),
        });
        Ok(())
    }

    /// One training step on the loss recorded by [`record`](Trainer::record): writes
    /// the parameters' current values into the recording, replays it, backpropagates
    /// and lets `optimizer` update `params`. Returns the loss before the update. After
    /// the first step this allocates nothing.
    ///
    /// An error, leaving `params` and the optimizer's state unchanged, when nothing is
    /// recorded, when `params` no longer has the names, shapes and frozen parameters it
    /// had when recorded, when the loss or a parameter's gradient is not finite, or when the optimizer
    /// refuses the step.
    ///
    /// ```
    /// use tapegrad::nn::{Params, Trainer};
    /// use tapegrad::optim::Sgd;
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// params.insert("w", Tensor::scalar(3.0))?;
    /// let (mut trainer, mut sgd) = (Trainer::new(), Sgd::new(0.25));
    /// trainer.record(&params, |p| Ok(p.get("w")?.powi(2)))?;
    /// assert_eq!(trainer.replay_step(&mut params, &mut sgd)?, 9.0);
    /// assert_eq!(params.get("w")?.item()?, 1.5); // 3 − 0.25·6
    /// assert_eq!(trainer.replay_step(&mut params, &mut sgd)?, 2.25);
    /// assert_eq!(params.get("w")?.item()?, 0.75);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn replay_step<O>(&mut self, params: &mut Params, optimizer: &mut O) -> Result<f64>
    where
        O: Optimizer + ?Sized,
    {
        let Some(recording) = &self.recording else {
            return Err(Error::Invalid {
                op: "replay_step".into(),
                reason: "nothing is recorded: call Trainer::record first".into(),
            });
        };
        if !recording.fits(params) {
            return Err(Error::Invalid {
                op: "replay_step".into(),
                reason: "the parameters changed names, shapes or frozen parameters since \
                         the loss was recorded: record it again"
                    .into(),
            });
        }
        let value = match &recording.block {
            // The parameters' values, and their gradients, lie in one block of each
            // arena: copied in and out in one pass each, with no look at the nodes.
            Some(block) => {
                self.tape
                    .set_leaf_block(block, params.tensors().map(Tensor::data))?;
                self.tape.replay();
                let loss = Var::new(&self.tape, recording.loss);
                let value = loss.item()?;
                if !value.is_finite() {
                    return Err(diverged(value));
                }
                loss.backward_into(&mut self.gradients)?;
                self.param_gradients
                    .fill(params, self.gradients.leaf_block(block)?);
                self.param_gradients.vouch_finite("train")?;
                value
            }
            None => {
                let bound = Bound::at(&self.tape, params, recording.first);
                self.tape
                    .set_consecutive_leaves(recording.first, params.tensors())?;
                self.tape.replay();
                let loss = Var::new(&self.tape, recording.loss);
                backpropagate(loss, &bound, &mut self.gradients, &mut self.param_gradients)?
            }
        };
        optimizer.step(params, &self.param_gradients)?;
        Ok(value)
    }
}

/// The fraction of rows of `scores: [N, C]` whose largest score is at the row's label
/// (the first of tied maxima counts).
///
/// ```
/// use tapegrad::nn::accuracy;
/// use tapegrad::Tensor;
/// let scores = Tensor::matrix(&[[0.1, 0.9], [2.0, -1.0], [0.3, 0.7]])?;
/// assert_eq!(accuracy(&scores, &[1, 0, 0])?, 2.0 / 3.0);
/// assert!(accuracy(&scores, &[1, 0]).is_err());
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn accuracy(scores: &Tensor, labels: &[usize]) -> Result<f64> {
    let dims = scores.shape().dims();
    let (rows, classes) = match dims {
        [n, c] if *n == labels.len() && *n > 0 && *c > 0 => (*n, *c),
        _ => {
            return Err(Error::Invalid {
                op: "accuracy".into(),
                reason: format!(
                    "expects scores [N, C] with N = {} labels, got shape {}",
                    labels.len(),
                    scores.shape()
                ),
            })
        }
    };
    let correct = scores
        .data()
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            best == label
        })
        .count();
    Ok(correct as f64 / rows as f64)
}
