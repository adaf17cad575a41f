"""Train fMRLRec (title features, no images) on Amazon Beauty with jax + optax (CPU or GPU, same code).

Loss: mean over the 8 Matryoshka sizes of the full-catalogue softmax cross-entropy of the next
item at every real position (model.mrl_loss), plus ``--distill-weight`` times the
self-distillation term (model.distill_loss: the full size's softmax at ``--distill-tau`` as a
stopped-gradient teacher of every smaller size; 0 by default, the paper's loss). Measured and
not in the recipe (docs/beauty-results.md): ``--cascade-weight`` (model.cascade_loss, the full
size's top items above each cascade size's own boundary), ``--small-ce-weight`` (scale of the
smaller sizes' cross-entropies) and ``--id-dropout``. ``--item-rank r``
adds the item-identity component (model.init_item_identity), ``--identity-width w`` keeps it to
dims 0..w-1; ``--init-from`` starts from saved weights. The committed model is one command from
scratch (the recipe and its times: datasets/README.md). AdamW (weight decay 0.01 on everything but biases,
eps 1e-9), global-norm clip 5.0, linear warm-up (100 steps) then cosine decay over ``--epochs``,
dropout ``--dropout``. Validation (NDCG@10 at width 1024, full ranking) after every epoch; early
stopping with patience 10; the best validation weights are saved to ``<out-dir>/best_params.npz``.
With ``--ema-decay d`` the weights validated and saved are an exponential moving average of the
trained ones (ema_update); training itself is unchanged, so a run with and one without it follow
the same trajectory for the same seed (up to float rounding). ``--whiten`` trains on ZCA-whitened
title features and saves weights with the whitening folded into the text projection
(model.fold_whitening), so evaluation and export read the raw features as before.
``--title-words`` (with ``--item-rank``) adds a vector per title word (data.title_words: the words
and the leading brand tokens that 2 to 10% of items share) to the identity row of every item whose
title has it (model.fold_title_words), so rarely bought items share identity with their brand;
validation and the saved weights see it folded into the identity table, so export is unchanged.

Time budget: ``--max-minutes`` stops training cleanly (checkpoint + best weights are written);
``--resume`` continues from ``<out-dir>/ckpt.npz`` (parameters, optimiser state, epoch, RNG and
early-stopping state), so a run may be split over several commands.

    python tools/encoder/train.py --out-dir .work/beauty [--epochs 500] [--lr 1e-4] [--batch-size 32]

CPU recipe: ``--tokens-per-batch 512`` (data.token_batches: about 512 positions per step in 14
fine length buckets, 6.8% padding, instead of 32 users in 4 buckets, 46% padding). Compiled steps
are cached in .work/jax-cache, so a resumed run does not compile again.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import jax
import jax.numpy as jnp
import optax

import data as D
import evaluate as EV
import features as F
import model as M


def make_optimizer(params, lr, total_steps, warmup, wd, clip):
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), 0.0)
    opt = optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(sched, b1=0.9, b2=0.999, eps=1e-9, weight_decay=wd, mask=M.decay_mask(params)),
    )
    return opt, sched


def ema_update(ema, params, step, decay):
    """One step of the exponential moving average of the weights (Polyak averaging).

    The decay is ``min(decay, (1 + step) / (10 + step))``, so the first steps do not drag the
    average towards the random initialisation. ``step`` counts from 0 (the step just taken).
    """
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def val_summary(res):
    """R@10 and N@10 at widths 64, 256 and 1024 from an ``evaluate.evaluate`` result, for the log."""
    return {s: {k: round(v, 5) for k, v in res[s].items() if k in ("NDCG@10", "Recall@10")}
            for s in ("64", "256", "1024")}


def save_ckpt(path, state, meta):
    """Write the training state (a pytree: parameters, optimiser state and, with ``--ema-decay``,
    the averaged weights) and ``meta`` atomically."""
    leaves = jax.tree_util.tree_leaves(state)
    arrs = {f"l{i}": np.asarray(x) for i, x in enumerate(leaves)}
    tmp = str(path) + ".tmp.npz"
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrs)
    os.replace(tmp, path)


def load_ckpt(path, state_like):
    """Read what save_ckpt wrote into a pytree shaped like ``state_like``."""
    z = np.load(path)
    treedef = jax.tree_util.tree_structure(state_like)
    n = treedef.num_leaves
    stored = sum(1 for k in z.files if k.startswith("l"))
    if stored != n:
        raise SystemExit(f"{path}: holds {stored} arrays, this configuration expects {n} "
                         f"(was it written with a different --ema-decay, --item-rank or --title-words?)")
    leaves = [jnp.asarray(z[f"l{i}"]) for i in range(n)]
    return jax.tree_util.tree_unflatten(treedef, leaves), json.loads(str(z["meta"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--features", default="datasets/beauty/item_features.npy")
    ap.add_argument("--out-dir", default=".work/beauty")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=500, help="length of the cosine schedule / max epochs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tokens-per-batch", type=int, default=0,
                    help="batches of about this many positions in fine length buckets (data.token_batches; "
                         "the CPU recipe) instead of --batch-size users in 4 buckets (0: off)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop after this much wall time (0: none)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (testing)")
    ap.add_argument("--eval-batch-size", type=int, default=256)
    ap.add_argument("--no-val", action="store_true", help="skip validation (timing runs)")
    ap.add_argument("--limit-users", type=int, default=0, help="use only the first N users (testing)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-every-min", type=float, default=3.0)
    ap.add_argument("--distill-weight", type=float, default=0.0,
                    help="weight of the self-distillation term (full size -> every smaller size; 0: off)")
    ap.add_argument("--distill-tau", type=float, default=1.0, help="temperature of the self-distillation term")
    ap.add_argument("--distill-topk", type=int, default=0,
                    help="distil towards the full size's own top-K items (uniform hard targets) instead of "
                         "its whole softmax (model.distill_loss; 0: the softmax)")
    ap.add_argument("--cascade-weight", type=float, default=0.0,
                    help="weight of the cascade term (model.cascade_loss: the full size's top items above each "
                         "cascade size's own boundary; 0: off)")
    ap.add_argument("--cascade-top", type=int, default=10, help="teacher items of the cascade term")
    ap.add_argument("--cascade-boundary", type=int, default=100, help="boundary rank of the cascade term")
    ap.add_argument("--small-ce-weight", type=float, default=1.0,
                    help="scale of the smaller sizes' cross-entropies (0: they learn from the full size only)")
    ap.add_argument("--id-dropout", type=float, default=0.0,
                    help="drop each item's identity part with this probability per step (0: off)")
    ap.add_argument("--item-rank", type=int, default=0,
                    help="add the item-identity component of this rank (model.init_item_identity; 0: text only)")
    ap.add_argument("--identity-width", type=int, default=0,
                    help="the identity component feeds only the item vector's first N dims (one of the "
                         "Matryoshka sizes; 0: all of them)")
    ap.add_argument("--title-words", action="store_true",
                    help="share identity between items through their title words (model.fold_title_words: "
                         "an item's identity row is its own row plus its words' vectors; needs --item-rank; "
                         "what is saved is folded into the identity table, so export is unchanged)")
    ap.add_argument("--ema-decay", type=float, default=0.0,
                    help="validate and save an exponential moving average of the weights with this decay "
                         "(for example 0.998; 0: off, the raw weights)")
    ap.add_argument("--val-raw-weights", action="store_true",
                    help="with --ema-decay, validate the raw weights too (one more validation per epoch; "
                         "the same run without --ema-decay gives them too, up to float rounding)")
    ap.add_argument("--whiten", action="store_true",
                    help="train on ZCA-whitened item features (model.feature_whitening); the saved weights "
                         "have the whitening folded into the text projection, so they take raw features")
    ap.add_argument("--init-from", default="",
                    help="start from these weights (a best_params.npz) instead of a random init; an "
                         "identity component they lack starts at zero, so the start is the same model")
    ap.add_argument("--val-agreement-users", type=int, default=0,
                    help="after every epoch also measure the prefix agreement on the first N validation users")
    ap.add_argument("--precision", default="default", choices=["default", "high", "highest"],
                    help="jax matmul precision for training (GPU 'default' allows TF32)")
    args = ap.parse_args(argv)
    if not 0.0 <= args.ema_decay < 1.0:
        ap.error(f"--ema-decay {args.ema_decay}: must be in [0, 1)")
    if args.whiten and args.init_from:
        ap.error("--whiten with --init-from: saved weights take raw features; start --whiten runs from scratch")
    if args.val_raw_weights and not args.ema_decay:
        ap.error("--val-raw-weights needs --ema-decay (without it the raw weights are the ones validated)")
    t_start = time.time()
    jax.config.update("jax_default_matmul_precision", args.precision)
    # compiled steps are reused across resumed runs (one shape per length bucket)
    jax.config.update("jax_compilation_cache_dir", str(D.resolve(".work/jax-cache")))

    out = D.resolve(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feats_np = D.load_features(args.features)
    seqs = D.load_sequences(args.data_dir)
    if args.limit_users:
        seqs = seqs[: args.limit_users]
    ts = D.train_examples(seqs, args.max_len)
    n_pos = sum(len(x) for x in ts.inputs)
    if args.tokens_per_batch:
        batches = lambda rng: D.token_batches(ts, args.tokens_per_batch, rng, args.max_len)
    else:
        batches = lambda rng: D.train_batches(ts, args.batch_size, rng, args.max_len)
    rng_probe = np.random.RandomState(0)
    slots = [w.size for _, _, w in batches(rng_probe)]
    steps_per_epoch = len(slots)
    total_steps = steps_per_epoch * args.epochs
    print(f"backend={jax.default_backend()} devices={jax.devices()} users={len(seqs)} "
          f"train_users={len(ts.inputs)} train_positions={n_pos} steps/epoch={steps_per_epoch} "
          f"padding={1 - n_pos / sum(slots):.3f}", flush=True)

    if args.whiten:   # the model trains on whitened rows; what is saved is folded back (deliverable)
        w_mu, w_P = M.feature_whitening(feats_np)
        feats_np = ((np.asarray(feats_np, np.float32) - w_mu) @ w_P).astype(np.float32)

    words = None
    if args.title_words:
        item, word, weight, vocab = D.title_words(F.load_titles(D.resolve(args.data_dir)))
        words = (item, word, weight)
        print(f"title words: {len(vocab)} words, {len(item)} item-word pairs", flush=True)

    def view(p):      # the trained parameters -> the model they stand for (title words folded in)
        return M.fold_title_words(p, words) if words is not None else p

    def deliverable(model):   # a view()ed model -> the weights saved (the whitening folded in)
        return M.fold_whitening(model, w_mu, w_P) if args.whiten else model

    feats = jnp.asarray(feats_np)
    params = M.init_params(jax.random.PRNGKey(args.seed), n_blocks=args.blocks)
    if args.init_from:
        params = jax.tree_util.tree_map(jnp.asarray, M.load_params(D.resolve(args.init_from)))
        print(f"initialised from {args.init_from}", flush=True)
    if args.identity_width and args.identity_width not in M.SIZES:
        ap.error(f"--identity-width {args.identity_width}: not one of the sizes {M.SIZES}")
    if args.item_rank and "id_emb" not in params:
        params.update(M.init_item_identity(jax.random.PRNGKey(args.seed + 7), feats_np.shape[0], args.item_rank,
                                           width=args.identity_width))
    if args.title_words:
        if "id_emb" not in params:
            ap.error("--title-words: the model has no item-identity component (add --item-rank)")
        params.update(M.init_title_words(len(vocab), params["id_emb"].shape[1]))
    if args.identity_width and "id_proj_w" not in params:
        ap.error(f"--identity-width {args.identity_width}: the model has no item-identity component "
                 "(add --item-rank, or --init-from a model that has one)")
    if args.identity_width:
        cut = np.abs(np.asarray(params["id_proj_w"])[:, args.identity_width:]).max(initial=0.0)
        if cut > 0:
            ap.error(f"--identity-width {args.identity_width}: the starting identity already feeds dims "
                     f"from {args.identity_width} on (max |A| there {cut:.3g})")
    opt, sched = make_optimizer(params, args.lr, total_steps, args.warmup_steps, args.weight_decay, args.clip)
    opt_state = opt.init(params)
    ema = jax.tree_util.tree_map(jnp.array, params) if args.ema_decay else None
    print(f"params: {M.count_params(params)} (unmasked), {M.count_params(params, dense=True)} stored dense",
          flush=True)

    meta = {"epoch": 0, "step": 0, "best_ndcg10": -1.0, "best_epoch": 0, "bad_epochs": 0,
            "history": [], "train_seconds": 0.0, "config": vars(args), "done": False}
    ckpt_path = out / "ckpt.npz"

    def state():
        return (params, opt_state) if ema is None else (params, opt_state, ema)

    if args.resume and ckpt_path.exists():
        (params, opt_state, *rest), meta = load_ckpt(ckpt_path, state())
        ema = rest[0] if rest else None
        print(f"resumed from {ckpt_path} at epoch {meta['epoch']} step {meta['step']}", flush=True)
        if meta.get("early_stopped") or meta["epoch"] >= args.epochs:
            print("training already finished", flush=True)
            return
        meta["done"] = False

    @jax.jit
    def train_step(params, opt_state, ema, ids, labels, weights, key, step):
        # the gradient is taken through view(), so title-word vectors learn from every item using them
        loss_of = lambda p, *rest: M.mrl_loss(view(p), *rest)
        (loss, per_size), grads = jax.value_and_grad(loss_of, has_aux=True)(
            params, feats, ids, labels, weights, args.dropout, key,
            args.distill_weight, args.distill_tau, args.distill_topk,
            args.cascade_weight, args.cascade_top, args.cascade_boundary, args.small_ce_weight,
            args.id_dropout, args.identity_width)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema is not None:
            ema = ema_update(ema, params, step, args.ema_decay)
        return params, opt_state, ema, loss, per_size

    base_key = jax.random.PRNGKey(args.seed + 1)
    last_ckpt = time.time()
    stop_reason = None
    seconds_before = meta["train_seconds"]
    t_run = time.time()
    while meta["epoch"] < args.epochs:
        ep = meta["epoch"]
        rng = np.random.RandomState(args.seed * 1000 + ep)
        t0 = time.time()
        losses, sizes_loss, nb = jnp.zeros(()), jnp.zeros((len(M.SIZES),)), 0
        for ids, labels, w in batches(rng):
            key = jax.random.fold_in(base_key, meta["step"])
            params, opt_state, ema, loss, per_size = train_step(
                params, opt_state, ema, jnp.asarray(ids), jnp.asarray(labels), jnp.asarray(w), key,
                jnp.asarray(meta["step"], jnp.float32))
            meta["step"] += 1
            nb += 1
            losses = losses + loss            # device-side running sums (no host sync per step)
            sizes_loss = sizes_loss + per_size
            if args.max_steps:
                print(f"  step {meta['step']} L={ids.shape[1]} loss {float(loss):.4f} "
                      f"({time.time() - t0:.1f}s)", flush=True)
            if args.max_steps and meta["step"] >= args.max_steps:
                stop_reason = "max-steps"
                break
            if args.max_minutes and (time.time() - t_start) > args.max_minutes * 60:
                stop_reason = "time budget"
                break
        jax.block_until_ready(params)
        t_train = time.time() - t0
        if stop_reason:
            meta["train_seconds"] = seconds_before + (time.time() - t_run)
            print(f"stopping inside epoch {ep + 1}: {stop_reason} (partial epoch discarded from the "
                  f"count; {nb} steps, {t_train:.1f}s)", flush=True)
            break
        meta["epoch"] = ep + 1
        rec = {"epoch": ep + 1, "step": meta["step"], "train_s": round(t_train, 2),
               "lr": float(sched(meta["step"])),
               "loss": round(float(losses) / max(1, nb), 4),
               "loss_by_size": [round(float(x) / max(1, nb), 3) for x in np.asarray(sizes_loss)]}
        if not args.no_val:
            t1 = time.time()
            judged = view(params if ema is None else ema)   # the model validated and saved
            res, _ = EV.evaluate(judged, feats_np, seqs, "val", args.eval_batch_size, args.max_len)
            rec["val_s"] = round(time.time() - t1, 2)
            rec["val"] = val_summary(res)
            if ema is not None and args.val_raw_weights:   # the average's gain, measured in the run
                raw, _ = EV.evaluate(view(params), feats_np, seqs, "val", args.eval_batch_size, args.max_len)
                rec["val_raw_weights"] = val_summary(raw)
            if args.val_agreement_users:
                agr = EV.prefix_agreement(judged, feats_np, seqs[: args.val_agreement_users], "val")
                rec["val_agreement"] = {w: {d: round(v, 4) for d, v in row.items()} for w, row in agr.items()}
            nd = res["1024"]["NDCG@10"]
            if nd > meta["best_ndcg10"]:
                meta["best_ndcg10"], meta["best_epoch"], meta["bad_epochs"] = nd, ep + 1, 0
                M.save_params(M.to_numpy(deliverable(judged)), out / "best_params.npz")
                rec["saved_best"] = True
            else:
                meta["bad_epochs"] += 1
        meta["history"].append(rec)
        meta["train_seconds"] = seconds_before + (time.time() - t_run)
        print(json.dumps(rec), flush=True)
        if meta["bad_epochs"] >= args.patience:
            stop_reason = "early stopping"
            meta["done"] = meta["early_stopped"] = True
            break
        if time.time() - last_ckpt > args.ckpt_every_min * 60:
            save_ckpt(ckpt_path, state(), meta)
            last_ckpt = time.time()
    else:
        meta["done"] = True
        stop_reason = "epochs done"
    if args.no_val:
        M.save_params(M.to_numpy(deliverable(view(params if ema is None else ema))), out / "last_params.npz")
    save_ckpt(ckpt_path, state(), meta)
    summary = {k: meta[k] for k in ("epoch", "step", "best_ndcg10", "best_epoch", "train_seconds", "done")}
    summary["stop_reason"] = stop_reason
    summary["backend"] = jax.default_backend()
    summary["device"] = str(jax.devices()[0])
    summary["config"] = vars(args)
    summary["history"] = meta["history"]
    (out / "train_meta.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("summary: " + json.dumps({k: v for k, v in summary.items() if k != "history"}), flush=True)


if __name__ == "__main__":
    main()
