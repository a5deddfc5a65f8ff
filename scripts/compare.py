#!/usr/bin/env python3
"""The benchmark workloads of docs/performance.md in NumPy, and in PyTorch and JAX when
they are installed, so that tapegrad's figures can be compared on the same machine.

Not part of CI: run it by hand (`python3 scripts/compare.py`) beside
`cargo bench --bench tapegrad`. Each workload prints its time per call (the median of
several repetitions) and, where the workload has one, the ratio to its plain baseline.
"""

import math
import statistics
import time


def timed(f, repeat=7, number=1):
    """Median seconds per call of f over `repeat` rounds of `number` calls."""
    f()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            f()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def fastest_of(f, calls):
    """Seconds taken by the fastest of `calls` calls of f."""
    fastest = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        f()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def timed_like_bench(f, rounds=60, calls=3):
    """Seconds per call as `cargo bench --bench tapegrad` reports them: the median over
    `rounds` of the fastest of `calls` calls."""
    for _ in range(calls):
        f()  # warm-up
    return statistics.median([fastest_of(f, calls) for _ in range(rounds)])


def report(name, seconds, baseline=None):
    ratio = "" if baseline is None else f"   {seconds / baseline:6.2f}x"
    print(f"  {name:<40} {seconds * 1e3:10.3f} ms{ratio}")


def w1_inputs(np, n=100_000):
    i = np.arange(n)
    return ((i * 37 % 101) / 101.0 - 0.5) * 2.0


def numpy_workloads():
    try:
        import numpy as np
    except ImportError:
        print("NumPy is not installed; skipping its workloads")
        return
    print(f"NumPy {np.__version__}")

    # W1, vectorised: y = sum(sin(x[:-1] * x[1:]) + tanh(x[:-1])).
    x = w1_inputs(np)

    def w1_plain():
        return np.sum(np.sin(x[:-1] * x[1:]) + np.tanh(x[:-1]))

    def w1_gradient():
        p = x[:-1] * x[1:]
        t = np.tanh(x[:-1])
        c = np.cos(p)
        g = np.zeros_like(x)
        g[:-1] += c * x[1:] + (1.0 - t * t)
        g[1:] += c * x[:-1]
        return np.sum(np.sin(p) + t), g

    base = timed(w1_plain, number=10)
    print("W1 (n = 100,000, vectorised)")
    report("numpy plain", base, base)
    report("numpy hand-written gradient", timed(w1_gradient, number=10), base)

    # W2: the lecture's XOR network, 10,000 epochs of its NumPy code.
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    def xor():
        rng = np.random.default_rng(0)
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
        y = np.array([[0], [1], [1], [0]], dtype=float)
        w1, w2 = rng.standard_normal((2, 4)), rng.standard_normal((4, 1))
        b1, b2 = np.zeros((1, 4)), np.zeros((1, 1))
        for _ in range(10_000):
            h = sigmoid(X @ w1 + b1)
            o = sigmoid(h @ w2 + b2)
            od = (y - o) * o * (1 - o)
            hd = (od @ w2.T) * h * (1 - h)
            w2 += h.T @ od * 0.1
            b2 += np.sum(od, axis=0, keepdims=True) * 0.1
            w1 += X.T @ hd * 0.1
            b1 += np.sum(hd, axis=0, keepdims=True) * 0.1
        return o

    print("W2 (XOR 2-4-1, 10,000 epochs)")
    report("lecture's numpy code", timed(xor, repeat=3))

    # W3: one SGD step of a 784-256-10 ReLU MLP, softmax cross-entropy, batch 128.
    rng = np.random.default_rng(7)
    X = rng.random((128, 784))
    labels = np.arange(128) % 10
    w1 = rng.standard_normal((784, 256)) * math.sqrt(2 / 784)
    w2 = rng.standard_normal((256, 10)) * math.sqrt(2 / 256)
    b1, b2 = np.zeros(256), np.zeros(10)

    def step():
        nonlocal w1, w2, b1, b2
        z = X @ w1 + b1
        h = np.maximum(z, 0)
        logits = h @ w2 + b2
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(128), labels]))
        g = p
        g[np.arange(128), labels] -= 1
        g /= 128
        gw2, gb2 = h.T @ g, g.sum(axis=0)
        gh = (g @ w2.T) * (z > 0)
        gw1, gb1 = X.T @ gh, gh.sum(axis=0)
        w1 -= 0.01 * gw1
        b1 -= 0.01 * gb1
        w2 -= 0.01 * gw2
        b2 -= 0.01 * gb2
        return loss

    print("W3 (784-256-10 MLP step, batch 128, f64)")
    report("hand-written numpy", timed(step, number=20))


def torch_workloads():
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed; skipping its workloads")
        return
    torch.set_num_threads(2)
    print(f"PyTorch {torch.__version__}, 2 threads")

    # W1 on scalars: every operation a 0-d tensor, as a scalar tape records it. The
    # full 100,000 inputs take about ten seconds; 10,000 give the same cost per op.
    n = 10_000
    xs = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True)
          for v in w1_inputs(__import__("numpy"), n)]

    def w1_scalars():
        y = torch.tensor(0.0, dtype=torch.float64)
        for a, b in zip(xs, xs[1:]):
            y = y + ((a * b).sin() + a.tanh())
        return torch.autograd.grad(y, xs)

    seconds = timed(w1_scalars, repeat=3)
    ops = 5 * (n - 1)
    print(f"W1 on scalars (n = {n:,}, {ops:,} recorded ops)")
    report("pytorch record + backward", seconds)
    print(f"  {'':<40} {seconds / ops * 1e9:10.0f} ns per op")

    # W2: the lecture's XOR network in PyTorch, full batch, 10,000 epochs of SGD.
    def xor():
        torch.manual_seed(0)
        X = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)
        y = torch.tensor([[0], [1], [1], [0]], dtype=torch.float64)
        w1 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        b1 = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
        w2 = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)
        b2 = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([w1, b1, w2, b2], lr=0.1)
        for _ in range(10_000):
            opt.zero_grad()
            o = torch.sigmoid(torch.sigmoid(X @ w1 + b1) @ w2 + b2)
            loss = 0.5 * ((o - y) ** 2).sum()
            loss.backward()
            opt.step()
        return loss

    print("W2 (XOR 2-4-1, 10,000 epochs)")
    report("pytorch", timed(xor, repeat=3))

    X = torch.rand(128, 784, dtype=torch.float64)
    labels = torch.arange(128) % 10
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    ).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), labels)
        loss.backward()
        opt.step()
        return loss

    print("W3 (784-256-10 MLP step, batch 128, f64; timed as the benchmark's W3 group)")
    report("pytorch", timed_like_bench(step))
    w3_side_by_side(step)


def w3_side_by_side(torch_step, rounds=40, calls=10):
    """W3 in PyTorch and in tapegrad (`examples/w3_step.rs`), alternating rounds in one
    run: each round times the fastest of `calls` steps of each, and the ratio is taken
    within the round, so that both meet the same phases of a shared machine.

    A round is 10 steps, not the benchmark's 3, because the switch between the two
    processes disturbs the first steps of each round: PyTorch's OpenMP threads keep
    spinning for a while after its round, on the cores tapegrad's round then needs, and
    tapegrad's first steps after its process sat idle run slower. Ten steps reach the
    steady state that a training loop runs in, for both tools alike."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = ["cargo", "run", "--quiet", "--release", "--example", "w3_step", "--",
               "--rounds-from-stdin"]
    try:
        rust = subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    except OSError as error:
        print(f"  tapegrad side by side skipped: {error}")
        return

    def tapegrad_round():
        rust.stdin.write(f"{calls}\n")
        rust.stdin.flush()
        return float(rust.stdout.readline()) / 1e3

    try:
        tapegrad_round()  # builds and warms up
    except (OSError, ValueError):
        print("  tapegrad side by side skipped: `cargo run --example w3_step` failed")
        rust.kill()
        return
    for _ in range(calls):
        torch_step()
    torch_times, rust_times, ratios = [], [], []
    for _ in range(rounds):
        fastest = fastest_of(torch_step, calls)
        ours = tapegrad_round()
        torch_times.append(fastest)
        rust_times.append(ours)
        ratios.append(ours / fastest)
    rust.stdin.close()
    rust.wait()
    print(f"  side by side, {rounds} alternating rounds of the fastest of {calls} steps:")
    report("pytorch (median)", statistics.median(torch_times))
    report("tapegrad (median)", statistics.median(rust_times))
    print(f"  {'tapegrad / pytorch, median of the rounds':<40} {statistics.median(ratios):10.2f}x")


def jax_workloads():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("JAX is not installed; skipping its workloads")
        return
    jax.config.update("jax_enable_x64", True)
    print(f"JAX {jax.__version__}")
    x = jnp.asarray(w1_inputs(__import__("numpy")))

    def f(x):
        return jnp.sum(jnp.sin(x[:-1] * x[1:]) + jnp.tanh(x[:-1]))

    plain = jax.jit(f)
    grad = jax.jit(jax.value_and_grad(f))
    base = timed(lambda: plain(x).block_until_ready(), number=10)
    print("W1 (n = 100,000, jit)")
    report("jax plain", base, base)
    report("jax value_and_grad", timed(lambda: grad(x)[1].block_until_ready(), number=10), base)

    np = __import__("numpy")
    rng = np.random.default_rng(7)
    X = jnp.asarray(rng.random((128, 784)))
    labels = jnp.arange(128) % 10
    params = (
        jnp.asarray(rng.standard_normal((784, 256)) * math.sqrt(2 / 784)),
        jnp.zeros(256),
        jnp.asarray(rng.standard_normal((256, 10)) * math.sqrt(2 / 256)),
        jnp.zeros(10),
    )

    def loss(params):
        w1, b1, w2, b2 = params
        logits = jnp.maximum(X @ w1 + b1, 0) @ w2 + b2
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(logp[jnp.arange(128), labels])

    @jax.jit
    def step(params):
        grads = jax.grad(loss)(params)
        return tuple(p - 0.01 * g for p, g in zip(params, grads))

    state = [params]

    def run():
        state[0] = step(state[0])
        state[0][0].block_until_ready()

    print("W3 (784-256-10 MLP step, batch 128, f64, jit)")
    report("jax", timed(run, number=20))


def processor():
    """The processor's model name, as /proc/cpuinfo gives it (Linux), else the platform's."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown processor"


if __name__ == "__main__":
    print(f"Processor: {processor()}")
    numpy_workloads()
    torch_workloads()
    jax_workloads()
