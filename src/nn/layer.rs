//! Layers: [`Linear`], the [`Activation`] that follows it, and the [`Mlp`] built from
//! both.
//!
//! A layer owns no numbers: it knows the names of its parameters in a [`Params`] store
//! and, given the store bound on a tape, records its forward pass there.

use super::init::Init;
use super::params::{Bound, Params};
use crate::error::{Error, Result};
use crate::function::Function;
use crate::tensor::Tensor;
use crate::var::Var;
use crate::Tape;
use rand::Rng;
use std::fmt;
use std::sync::Arc;

/// The function applied after a layer's affine map: any built-in activation, none
/// ([`Identity`](Activation::Identity)), a user function ([`Activation::custom`]), or
/// any composition of tape ops ([`Activation::from_fn`]).
///
/// ```
/// use std::sync::Arc;
/// use tapegrad::nn::Activation;
/// use tapegrad::{ScalarFunction, Tape};
///
/// struct Cube;
/// impl ScalarFunction for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn value(&self, x: f64) -> f64 { x * x * x }
///     fn derivative(&self, x: f64) -> f64 { 3.0 * x * x }
/// }
///
/// let tape = Tape::new();
/// let x = tape.var(2.0);
/// assert_eq!(Activation::Relu.apply(x)?.item()?, 2.0);
/// assert_eq!(Activation::LeakyRelu(0.1).apply(-x)?.item()?, -0.2);
/// let cube = Activation::custom(Cube);
/// assert_eq!(cube.name(), "cube");
/// assert_eq!(cube.apply(x)?.backward()?.wrt_scalar(x)?, 12.0);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone)]
pub enum Activation {
    /// No activation: the layer stays linear.
    Identity,
    /// The step function (its derivative is 0: a network of steps cannot learn).
    Step,
    /// The sigmoid σ(x).
    Sigmoid,
    /// tanh x.
    Tanh,
    /// max(x, 0).
    Relu,
    /// Leaky ReLU with the given slope α for x < 0.
    LeakyRelu(f64),
    /// ELU with the given α.
    Elu(f64),
    /// x/(1 + |x|).
    Softsign,
    /// arctan x.
    Atan,
    /// exp(−x²).
    Gaussian,
    /// Swish x·σ(βx) with the given β (β = 1 is SiLU).
    Swish(f64),
    /// ln(1 + eˣ).
    Softplus,
    /// GELU, the exact erf form x·Φ(x) ([`Var::gelu`]).
    Gelu,
    /// GELU, the tanh approximation ([`Var::gelu_tanh`]).
    GeluTanh,
    /// A user function, applied to the layer's output as a whole.
    Custom(Arc<dyn Function>),
    /// A composition of tape ops, made by [`Activation::from_fn`].
    Composed(Composed),
}

/// An activation written as a composition of tape ops: a name and a closure that
/// records the activation of a layer's output (see [`Activation::from_fn`]). Cloning
/// it shares the closure.
#[derive(Clone)]
pub struct Composed {
    name: String,
    f: Arc<ComposedFn>,
}

/// The closure of a [`Composed`] activation.
type ComposedFn = dyn for<'t> Fn(Var<'t>) -> Result<Var<'t>> + Send + Sync;

impl Composed {
    /// The activation's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records the activation of `x`: the closure's result.
    pub fn apply<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        (self.f)(x)
    }
}

impl fmt::Debug for Composed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composed")
            .field("name", &self.name)
            .finish()
    }
}

impl Activation {
    /// A user [`ScalarFunction`](crate::ScalarFunction) (or [`Function`]) as an
    /// activation.
    pub fn custom<F: Function + 'static>(f: F) -> Activation {
        Activation::Custom(Arc::new(f))
    }

    /// An activation made of tape ops: `f` records the activation of a layer's output
    /// `x` with any ops of [`Var`] (its derivative comes from theirs, so it needs no
    /// backward rule of its own), and `name` names it. The closure is called at each
    /// forward pass; an error it returns stops the pass.
    ///
    /// Mish, `x·tanh(softplus(x))`, as the hidden activation of a network:
    ///
    /// ```
    /// use tapegrad::nn::{init, Activation, Mlp, Params};
    /// use tapegrad::{Tape, Tensor};
    ///
    /// let mish = Activation::from_fn("mish", |x| Ok(x * x.softplus().tanh()));
    /// assert_eq!(mish.name(), "mish");
    /// let tape = Tape::new();
    /// let x = tape.var(1.0);
    /// let y = mish.apply(x)?;
    /// let softplus = 1f64.exp().ln_1p();
    /// assert!((y.item()? - softplus.tanh()).abs() < 1e-15);
    /// // d/dx x·tanh(sp(x)) = tanh(sp(x)) + x·(1 − tanh²(sp(x)))·σ(x)
    /// let want = softplus.tanh() + (1.0 - softplus.tanh().powi(2)) / (1.0 + (-1f64).exp());
    /// assert!((y.backward()?.wrt_scalar(x)? - want).abs() < 1e-15);
    ///
    /// let mut params = Params::new();
    /// let net = Mlp::builder(2)
    ///     .layer(3, mish.clone())
    ///     .layer(1, Activation::Identity)
    ///     .build(&mut params, &mut init::rng(0))?;
    /// let out = net.predict(&params, &Tensor::matrix(&[[0.5, -1.0]])?)?;
    /// assert_eq!(out.shape().dims(), &[1, 1]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn from_fn<F>(name: impl Into<String>, f: F) -> Activation
    where
        F: for<'t> Fn(Var<'t>) -> Result<Var<'t>> + Send + Sync + 'static,
    {
        Activation::Composed(Composed {
            name: name.into(),
            f: Arc::new(f),
        })
    }

    /// The activation's name (`"identity"` for none).
    pub fn name(&self) -> &str {
        match self {
            Activation::Identity => "identity",
            Activation::Step => "step",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Elu(_) => "elu",
            Activation::Softsign => "softsign",
            Activation::Atan => "atan",
            Activation::Gaussian => "gaussian",
            Activation::Swish(_) => "swish",
            Activation::Softplus => "softplus",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Custom(f) => f.name(),
            Activation::Composed(c) => c.name(),
        }
    }

    /// Records the activation of `x`; an error for a non-finite α or β.
    pub fn apply<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        Ok(match self {
            Activation::Identity => x,
            Activation::Step => x.step(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(alpha) => x.try_leaky_relu(*alpha)?,
            Activation::Elu(alpha) => x.try_elu(*alpha)?,
            Activation::Softsign => x.softsign(),
            Activation::Atan => x.atan(),
            Activation::Gaussian => x.gaussian(),
            Activation::Swish(beta) => x.try_swish(*beta)?,
            Activation::Softplus => x.softplus(),
            Activation::Gelu => x.gelu(),
            Activation::GeluTanh => x.gelu_tanh(),
            Activation::Custom(f) => x.apply(f)?,
            Activation::Composed(c) => c.apply(x)?,
        })
    }

    /// The initialisation that suits a layer followed by this activation: He for the
    /// ReLU family, Xavier/Glorot for the others.
    pub fn default_init(&self) -> Init {
        match self {
            Activation::Relu | Activation::LeakyRelu(_) | Activation::Elu(_) => Init::HeNormal,
            _ => Init::XavierNormal,
        }
    }
}

impl fmt::Debug for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::LeakyRelu(a) | Activation::Elu(a) | Activation::Swish(a) => {
                write!(f, "{}({a})", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

// ---------------------------------------------------------------------------------------
/// A fully connected layer `y = x·W + b` for a batch `x: [N, inputs]`, with
/// `W: [inputs, outputs]` and `b: [1, outputs]` (broadcast over the rows) — the layout
/// of the lecture's `np.dot(X, W) + b`.
///
/// The parameters are `"{name}.weight"` and `"{name}.bias"` in the store; the bias
/// starts at zero. A layer made by [`without_bias`](Linear::without_bias) is
/// `y = x·W`, with no `"{name}.bias"` (PyTorch's `nn.Linear(bias=False)`).
///
/// ```
/// use tapegrad::nn::{init, Init, Linear, Params};
/// use tapegrad::{Tape, Tensor};
/// let mut params = Params::new();
/// let layer = Linear::new(&mut params, "fc", 2, 3, Init::Constant(0.5), &mut init::rng(0))?;
/// assert_eq!(params.names().collect::<Vec<_>>(), ["fc.weight", "fc.bias"]);
/// let tape = Tape::new();
/// let bound = params.bind(&tape);
/// let x = tape.constant_tensor(&Tensor::matrix(&[[1.0, 2.0]])?);
/// let y = layer.forward(&bound, x)?;
/// assert_eq!(y.value(), Tensor::matrix(&[[1.5, 1.5, 1.5]])?);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: String,
    /// The bias's name; `None` for a layer without a bias.
    bias: Option<String>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// Adds the parameters of a new layer to `params`: the weight filled by `init`
    /// from `rng`, the bias zero. An error, leaving `params` unchanged, if a size is 0,
    /// a name is taken, or `init` is invalid.
    pub fn new<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        inputs: usize,
        outputs: usize,
        init: Init,
        rng: &mut R,
    ) -> Result<Linear> {
        Linear::with_bias(params, name, inputs, outputs, init, rng, true)
    }

    /// Adds the weight of a new layer `y = x·W` without a bias to `params`, filled by
    /// `init` from `rng`. An error, leaving `params` unchanged, if a size is 0, the
    /// name is taken, or `init` is invalid.
    ///
    /// ```
    /// use tapegrad::nn::{init, Init, Linear, Params};
    /// use tapegrad::{Tape, Tensor};
    /// let mut params = Params::new();
    /// let layer = Linear::without_bias(&mut params, "fc", 2, 1, Init::Constant(0.5), &mut init::rng(0))?;
    /// assert_eq!(params.names().collect::<Vec<_>>(), ["fc.weight"]);
    /// assert_eq!(layer.bias_name(), None);
    /// let tape = Tape::new();
    /// let bound = params.bind(&tape);
    /// let x = tape.constant_tensor(&Tensor::matrix(&[[1.0, 2.0], [0.0, 0.0]])?);
    /// let y = layer.forward(&bound, x)?;
    /// assert_eq!(y.value(), Tensor::matrix(&[[1.5], [0.0]])?); // no offset at x = 0
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn without_bias<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        inputs: usize,
        outputs: usize,
        init: Init,
        rng: &mut R,
    ) -> Result<Linear> {
        Linear::with_bias(params, name, inputs, outputs, init, rng, false)
    }

    /// [`new`](Linear::new) when `bias`, else [`without_bias`](Linear::without_bias).
    fn with_bias<R: Rng + ?Sized>(
        params: &mut Params,
        name: &str,
        inputs: usize,
        outputs: usize,
        init: Init,
        rng: &mut R,
        bias: bool,
    ) -> Result<Linear> {
        let layer = Linear::plan(params, name, inputs, outputs, bias)?;
        let weight = init.tensor([inputs, outputs], rng)?;
        params.insert(layer.weight.clone(), weight)?;
        if let Some(bias) = &layer.bias {
            params.insert(bias.clone(), Tensor::zeros([1, outputs]))?;
        }
        Ok(layer)
    }

    /// The layer's names, checked to be free in `params`, with nothing inserted yet.
    fn plan(
        params: &Params,
        name: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
    ) -> Result<Linear> {
        if inputs == 0 || outputs == 0 {
            return Err(Error::Invalid {
                op: "linear".into(),
                reason: format!(
                    "a layer needs at least one input and output, got {inputs}→{outputs}"
                ),
            });
        }
        let layer = Linear {
            weight: format!("{name}.weight"),
            bias: bias.then(|| format!("{name}.bias")),
            inputs,
            outputs,
        };
        for taken in std::iter::once(&layer.weight).chain(&layer.bias) {
            if params.contains(taken) {
                return Err(Error::Invalid {
                    op: "linear".into(),
                    reason: format!("a parameter named {taken:?} already exists"),
                });
            }
        }
        Ok(layer)
    }

    /// Records `x·W + b` (or `x·W` for a layer without a bias) for `x: [N, inputs]`;
    /// an error when `x` does not fit or the layer's parameters are missing from
    /// `params`.
    pub fn forward<'t>(&self, params: &Bound<'t, '_>, x: Var<'t>) -> Result<Var<'t>> {
        let w = params.get(&self.weight)?;
        match &self.bias {
            Some(bias) => {
                let b = params.get(bias)?;
                x.try_matmul(w)?.try_add(b)
            }
            None => x.try_matmul(w),
        }
    }

    /// The name of the weight parameter.
    pub fn weight_name(&self) -> &str {
        &self.weight
    }

    /// The name of the bias parameter; `None` for a layer without a bias.
    pub fn bias_name(&self) -> Option<&str> {
        self.bias.as_deref()
    }

    /// The number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
}

// ---------------------------------------------------------------------------------------
/// A multilayer perceptron: [`Linear`] layers, each followed by its [`Activation`].
///
/// Build one with [`Mlp::builder`]. The lecture's XOR network (2 inputs, 4 hidden
/// sigmoid units, 1 sigmoid output, weights from N(0, 1), zero biases):
///
/// ```
/// use tapegrad::nn::{init, Activation, Init, Mlp, Params};
/// use tapegrad::Tensor;
/// let mut params = Params::new();
/// let net = Mlp::builder(2)
///     .layer(4, Activation::Sigmoid)
///     .layer(1, Activation::Sigmoid)
///     .init(Init::Normal { mean: 0.0, std: 1.0 })
///     .build(&mut params, &mut init::rng(42))?;
/// assert_eq!(
///     params.names().collect::<Vec<_>>(),
///     ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"]
/// );
/// assert_eq!(params.numel(), 2 * 4 + 4 + 4 * 1 + 1);
/// let x = Tensor::matrix(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])?;
/// let y = net.predict(&params, &x)?;
/// assert_eq!(y.shape().dims(), &[4, 1]);
/// assert!(y.data().iter().all(|&p| 0.0 < p && p < 1.0));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<(Linear, Activation)>,
}

impl Mlp {
    /// A builder for a network taking `inputs` features per row.
    pub fn builder(inputs: usize) -> MlpBuilder {
        MlpBuilder {
            inputs,
            layers: Vec::new(),
            init: None,
            prefix: "layer".into(),
            bias: true,
        }
    }

    /// Records the network's output for a batch `x: [N, inputs]`.
    pub fn forward<'t>(&self, params: &Bound<'t, '_>, x: Var<'t>) -> Result<Var<'t>> {
        let mut h = x;
        for (layer, activation) in &self.layers {
            h = activation.apply(layer.forward(params, h)?)?;
        }
        Ok(h)
    }

    /// The network's output for `x: [N, inputs]`, computed on a scratch tape without
    /// gradients (for evaluation, not for training loops).
    pub fn predict(&self, params: &Params, x: &Tensor) -> Result<Tensor> {
        let tape = Tape::new();
        tape.no_grad_scope(|| {
            let bound = params.bind(&tape);
            let x = tape.constant_tensor(x);
            Ok(self.forward(&bound, x)?.value())
        })
    }

    /// The layers and their activations, input side first.
    pub fn layers(&self) -> &[(Linear, Activation)] {
        &self.layers
    }
}

/// Builds an [`Mlp`]: the input width, then one [`layer`](MlpBuilder::layer) call per
/// layer with its width and activation.
#[derive(Clone, Debug)]
pub struct MlpBuilder {
    inputs: usize,
    layers: Vec<(usize, Activation)>,
    init: Option<Init>,
    prefix: String,
    bias: bool,
}

impl MlpBuilder {
    /// Adds a layer of `outputs` units followed by `activation`
    /// ([`Activation::Identity`] for none).
    pub fn layer(mut self, outputs: usize, activation: Activation) -> MlpBuilder {
        self.layers.push((outputs, activation));
        self
    }

    /// Initialises every weight with `init` instead of each activation's
    /// [`default_init`](Activation::default_init). Biases always start at zero.
    pub fn init(mut self, init: Init) -> MlpBuilder {
        self.init = Some(init);
        self
    }

    /// Gives every layer a bias (`true`, the default) or none (`false`: each layer is
    /// `y = x·W`, see [`Linear::without_bias`]).
    ///
    /// ```
    /// use tapegrad::nn::{init, Activation, Mlp, Params};
    /// use tapegrad::Tensor;
    /// let mut params = Params::new();
    /// let net = Mlp::builder(3)
    ///     .layer(4, Activation::Tanh)
    ///     .layer(2, Activation::Sigmoid)
    ///     .bias(false)
    ///     .build(&mut params, &mut init::rng(1))?;
    /// assert_eq!(params.names().collect::<Vec<_>>(), ["layer1.weight", "layer2.weight"]);
    /// // Without biases, a zero input gives tanh(0) = 0 and then σ(0) = ½.
    /// let y = net.predict(&params, &Tensor::zeros([1, 3]))?;
    /// assert_eq!(y, Tensor::matrix(&[[0.5, 0.5]])?);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn bias(mut self, bias: bool) -> MlpBuilder {
        self.bias = bias;
        self
    }

    /// Names the layers `"{prefix}1"`, `"{prefix}2"`, … (default `"layer"`).
    pub fn name(mut self, prefix: impl Into<String>) -> MlpBuilder {
        self.prefix = prefix.into();
        self
    }

    /// Adds every layer's parameters to `params`, drawing weights from `rng` layer by
    /// layer. An error, leaving `params` unchanged, for a network without layers, a
    /// width of 0, a name already taken or an invalid initialisation.
    pub fn build<R: Rng + ?Sized>(self, params: &mut Params, rng: &mut R) -> Result<Mlp> {
        if self.layers.is_empty() {
            return Err(Error::Invalid {
                op: "mlp".into(),
                reason: "a network needs at least one layer".into(),
            });
        }
        // Build into a scratch store first, so that a failure leaves `params` as it was.
        let mut fresh = Params::new();
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut width = self.inputs;
        for (i, (outputs, activation)) in self.layers.into_iter().enumerate() {
            let name = format!("{}{}", self.prefix, i + 1);
            Linear::plan(params, &name, width, outputs, self.bias)?;
            let init = self.init.unwrap_or_else(|| activation.default_init());
            let layer = Linear::with_bias(&mut fresh, &name, width, outputs, init, rng, self.bias)?;
            layers.push((layer, activation));
            width = outputs;
        }
        for (name, value) in fresh.iter() {
            params.insert(name, value.clone())?;
        }
        Ok(Mlp { layers })
    }
}
