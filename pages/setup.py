"""Setup: engine, evaluation mode, search space, Env, training, priorities, prompt and LLM endpoint."""

import json
import os

import streamlit as st

from nas_core import studio
from nas_core.errors import UserError
from ui.common import get_store, open_run, progress_bar, worker_badge

store = get_store()
worker_badge(store)
st.title("Set up a run")

base = studio.default_config()
datasets = studio.dataset_options(store)
ENGINES = studio.engine_labels()  # the engine registry's names and labels

c1, c2 = st.columns(2)
name = c1.text_input("Run name", "my search", key="cfg_name")
dataset = c1.selectbox("Data set", [d[1] for d in datasets], key="cfg_dataset",
                       format_func=dict((v, k) for k, v in datasets).get)
engine = c2.selectbox("Engine", list(ENGINES), format_func=ENGINES.get, key="cfg_engine")
evaluation = c2.radio("Evaluation", ["scratch", "supernet"], horizontal=True, key="cfg_eval",
                      format_func={"scratch": "train every candidate from scratch",
                                   "supernet": "super-network estimates (seconds each)"}.get)

tabs = st.tabs(["Search space", "Env", "Training", "Priorities", "Prompt", "LLM endpoint", "LINAS"])
with tabs[0]:
    st.caption("Choices: the allowed values of every field of the Template, and the block-count range. "
               "A spec over max_params or max_macs is invalid.")
    choices_json = st.text_area("Choices (JSON)", studio.choices_json(base.choices), height=420,
                                key="cfg_choices")
with tabs[1]:
    e1, e2, e3 = st.columns(3)
    device = e1.selectbox("Device", ["cpu", "cuda", "auto"], key="cfg_device")
    threads = e2.number_input("Threads", 1, 64, base.env.threads, key="cfg_threads")
    env_batch = e3.number_input("Inference batch size", 1, 512, base.env.batch_size, key="cfg_env_batch")
    lat = e1.number_input("Latency budget (s / image, 0 = none)", 0.0, 10.0, 0.0, format="%.4f",
                          key="cfg_latency")
    mem = e2.number_input("Memory budget (MB, 0 = none)", 0.0, 1e5, 0.0, key="cfg_memory")
with tabs[2]:
    t1, t2, t3 = st.columns(3)
    optimizer = t1.selectbox("Optimizer", ["adam", "adamw", "sgd"], key="cfg_opt")
    lr = t1.number_input("Learning rate", 1e-5, 1.0, base.train.lr, format="%.5f", key="cfg_lr")
    batch = t2.number_input("Batch size", 1, 1024, base.train.batch_size, key="cfg_batch")
    epochs = t2.number_input("Max epochs", 1, 500, base.train.max_epochs, key="cfg_epochs")
    patience = t3.number_input("Patience", 1, 100, base.train.patience, key="cfg_patience")
    size = t3.number_input("Image size (px)", 16, 512, base.train.image_size, key="cfg_size")
    seed = t1.number_input("Seed", 0, 10**6, base.train.seed, key="cfg_seed")
    intersectional = t2.checkbox("Intersectional groups (sex × age)", base.train.intersectional,
                                 key="cfg_intersectional",
                                 help="Also report every combination of sex and age group (e.g. female×65+) in "
                                      "every fairness metric. The groups are smaller: watch the small-group "
                                      "warnings.")
    precisions = {"fp32": "fp32", "bf16": "bf16 (autocast)",
                  "auto": "auto: bf16 where it is faster (native bf16 CPU, no depthwise convolutions)"}
    precision = t3.selectbox("Training arithmetic", list(precisions), format_func=precisions.get,
                             index=list(precisions).index(base.train.precision), key="cfg_precision",
                             help="bf16 runs the training forward pass in bfloat16 (weights, optimizer and every "
                                  "measurement stay fp32). On a CPU with native bf16 (AVX512-BF16, AMX) it trained "
                                  "plain and residual networks in 0.56-0.99x the time, depthwise ones (mbconv, "
                                  "dwsep) in 2.3-4.3x, at the same accuracy (0.9 points SD against 4.1 between "
                                  "seeds). Each result records the arithmetic it was trained in.")
with tabs[3]:
    st.caption("Ordered: compare on the first objective; candidates within its tolerance are ties, decided by "
               "the next one. A guard caps how much an objective may lose against the best. Weighted: a "
               "normalized weighted sum. Default (FL-NAS): improve fairness without decreasing accuracy, "
               "hardware last.")
    mode = st.radio("Mode", ["ordered", "weighted"], horizontal=True, key="cfg_pmode")
    prio_json = st.text_area("Objectives (JSON list, first = most important)",
                             json.dumps(base.priorities.to_dict()["objectives"], indent=1), height=220,
                             key="cfg_prio")
    st.caption("Metric names: " + ", ".join(studio.objective_names()))
with tabs[4]:
    st.caption("Placeholders: " + ", ".join("{" + p + "}" for p in studio.placeholders()))
    p_app = st.text_area("PromptApp (system message)", base.prompt.app, key="cfg_p_app", height=80)
    p_task = st.text_area("PromptTask", base.prompt.task, key="cfg_p_task", height=120)
    p_const = st.text_area("PromptConst", base.prompt.const, key="cfg_p_const", height=260)
with tabs[5]:
    l1, l2 = st.columns(2)
    base_url = l1.text_input("Base URL (empty = OpenAI)", "", key="cfg_base_url",
                             placeholder="http://localhost:11434/v1 (Ollama) or http://host:8000/v1 (vLLM)")
    model = l2.text_input("Model", base.llm.model, key="cfg_model")
    temperature = l1.slider("Temperature", 0.0, 2.0, base.llm.temperature, key="cfg_temp")
    retries = l2.number_input("Retries after an invalid answer", 0, 10, base.llm.max_retries, key="cfg_retries")
    decodings = studio.decoding_labels()
    decoding = st.selectbox("Constrained decoding", list(decodings), format_func=decodings.get,
                            index=list(decodings).index(base.llm.decoding), key="cfg_decoding",
                            help="How the answer is held to the run's Choices; the transcript records the "
                                 "rung each call used. docs/search.md lists the setting per server.")
    key_source = "environment (OPENAI_API_KEY / EQUINAS_LLM_API_KEY)" if (
        os.environ.get("OPENAI_API_KEY") or os.environ.get("EQUINAS_LLM_API_KEY")) else "not set in the environment"
    st.caption(f"API key: {key_source}. A key typed below stays in this browser session's memory only; it is "
               "never stored, logged or shown again.")
    api_key = st.text_input("API key", type="password", key="cfg_api_key")
    if api_key:  # the widget forgets its value when the page changes; this browser session does not
        st.session_state["llm_api_key"] = api_key
    api_key = api_key or st.session_state.get("llm_api_key", "")
    if api_key and not st.session_state.get("cfg_api_key"):
        st.caption("Using the API key typed earlier in this browser session.")
with tabs[6]:
    objectives = st.multiselect("Objectives (2 to 5)", studio.objective_names(), list(base.objectives),
                                key="cfg_objectives")
    constraints_text = st.text_input("Constraints (comma separated)", "", key="cfg_constraints",
                                     placeholder="latency<=0.01, params<=200000")
    l1, l2, l3 = st.columns(3)
    population = l1.number_input("Population per iteration", 1, 200, base.population, key="cfg_population")
    budget = l2.number_input("Budget (evaluations, 0 = none)", 0, 100000, 0, key="cfg_budget")
    algorithm = l3.selectbox("Inner algorithm", ["auto", "nsga2", "agemoea", "unsga3", "moead", "ctaea"],
                             key="cfg_algorithm")

auto = st.checkbox("Auto-approve every proposal (unattended)", key="cfg_auto")


def make_config():
    cons = tuple(studio.parse_constraint(c) for c in constraints_text.split(",") if c.strip())
    return studio.build_config(
        base, name=name, dataset=dataset, engine=engine, evaluation=evaluation, choices_json=choices_json,
        env={"device": device, "threads": int(threads), "batch_size": int(env_batch),
             "latency_budget_s": lat or None, "memory_budget_mb": mem or None},
        train={"optimizer": optimizer, "lr": float(lr), "batch_size": int(batch), "max_epochs": int(epochs),
               "patience": int(patience), "image_size": int(size), "seed": int(seed),
               "intersectional": bool(intersectional), "precision": precision},
        priorities={"mode": mode, "objectives": json.loads(prio_json)},
        prompt={"app": p_app, "task": p_task, "const": p_const},
        llm={"base_url": base_url or None, "model": model, "temperature": float(temperature),
             "max_retries": int(retries), "decoding": decoding},
        objectives=tuple(objectives), constraints=cons, population=int(population),
        budget=int(budget) or None, algorithm=algorithm, auto_approve=auto, device=device,
        per_iteration=int(population) if studio.engine_proposes_batches(engine) else 1, seed=int(seed),
    )


try:
    config = make_config()
except (UserError, ValueError) as exc:
    st.error(f"Fix this before creating the run: {exc}")
    st.stop()

if evaluation == "supernet":
    with st.container(border=True):
        st.markdown("**Super-network.** Sub-networks of one elastic network, trained once on this data set, "
                    "are measured in seconds. Their numbers are estimates and are labelled so; the Kendall tau "
                    "below says how well they rank against training from scratch. Fine-tune the ones you like.")
        overview = studio.supernet_overview(store)
        training = studio.supernet_training_jobs(store)
        if overview.empty and not training:
            st.info("No super-network trained yet. Train one for this data set (the worker does it; minutes "
                    "per epoch on a CPU, use a subsample or a GPU to go faster).")
        elif overview.empty:
            st.info("A super-network training is queued or running (below, and on **Jobs**); it is listed "
                    "here once its first epoch is saved.")
        else:
            st.dataframe(overview, hide_index=True, key="supernets")

        @st.fragment(run_every=3)
        def _training_progress() -> None:
            """Live progress of the trainings (only this part refreshes)."""
            for job in studio.supernet_training_jobs(get_store()):
                progress_bar(job.get("fraction"), job.get("message") or "",
                             label=f"training job {job['job']}: {job['status']}")

        if training:  # polled only while there is something to watch (see pages/search.py)
            _training_progress()
        if not overview.empty and (overview["status"] == "trained").any():
            c1, c2 = st.columns([3, 1])
            c1.caption(studio.supernet_ranking_text(store) or "")
            if c2.button("Measure its ranking (slow)", key="sn_calibrate",
                         help="The worker trains 8 sub-networks from scratch with two seeds each (tens of "
                              "minutes on a CPU) and records the Kendall tau and the noise ceiling."):
                try:
                    job_id = studio.queue_supernet_calibration(store)
                except (UserError, ValueError) as exc:
                    st.error(str(exc))
                else:
                    st.toast(f"Ranking calibration queued (job {job_id}); the worker runs it.")
        s1, s2, s3 = st.columns(3)
        sn_epochs = s1.number_input("Epochs", 1, 500, 12, key="sn_epochs")
        sn_sub = s2.number_input("Subsample (0 = all images)", 0, 10**6, 0, key="sn_subsample")
        if s3.button("Train the super-network", key="sn_train"):
            try:
                job_id = studio.queue_supernet_training(store, config, int(sn_epochs), int(sn_sub) or None)
            except (UserError, ValueError) as exc:
                st.error(str(exc))
            else:
                st.toast(f"Super-network training queued (job {job_id}); the worker runs it.")

with st.expander("Rendered prompt (exactly what the LLM designer would receive first)",
                 expanded=engine == "llm"):
    try:
        st.code(studio.preview_prompt(config).text, language=None)
    except UserError as exc:
        st.error(str(exc))

if st.button("Create run", key="create_run", type="primary"):
    try:
        run_id = studio.create_run(store, config, api_key=api_key or None)
    except UserError as exc:
        st.error(str(exc))
    else:
        if api_key:
            st.session_state[f"api_key_{run_id}"] = api_key
        open_run("pages/search.py", run_id)
