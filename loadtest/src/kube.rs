//! `kube run`: the harness spread over a Kubernetes Job, with `kube` (the Kubernetes API is the
//! right tool here: pods to create, a barrier across them, their reports to gather). The
//! coordinator creates an Indexed Job of N worker pods — worker i drives accounts
//! `1 + i·U … (i+1)·U` (`--first-user`) — waits until every worker is connected to the API and
//! ready, releases them together at one start time, collects each worker's JSON report and
//! merges them ([`merge`](crate::merge)) into one, exactly as `merge` would. The barrier and the
//! reports are ConfigMaps labelled with the run's name, written by the workers under a
//! ServiceAccount and Role the coordinator creates for the run; everything is deleted at the end
//! (unless `--keep`). A worker that fails publishes its error instead of a report, and the run
//! stops with it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, ResourceRequirements, SecretKeySelector, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::cli::{Cli, KubeRunArgs, KubeWorkerArgs};

/// The label every object of a run carries, with the run's name.
const RUN_LABEL: &str = "starling-loadtest/run";
/// How long the workers get between the release and the start: enough to see the ConfigMap.
const START_LEAD: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(500);

/// The coordinator.
pub async fn run(args: KubeRunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("no Kubernetes API (in-cluster, or KUBECONFIG)")?;
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let name = args.name.clone().unwrap_or_else(|| format!("starling-loadtest-{:08x}", rand::random::<u32>()));
    // The scenario must parse here, not fail in every pod.
    Cli::try_parse_from(worker_argv(&args.scenario, 0, args.users_per_worker, "report.json")).context("the scenario's arguments")?;
    let run = Run { client: client.clone(), namespace, name };
    run.create(&args).await?;
    println!("run {}: {} workers in namespace {}", run.name, args.workers, run.namespace);
    let outcome = run.coordinate(&args).await;
    if !args.keep {
        run.delete().await;
    }
    let merged = outcome?;
    crate::report::write_json(&args.output, &merged)?;
    println!("merged {} reports into {}", args.workers, args.output.display());
    Ok(())
}

struct Run {
    client: Client,
    namespace: String,
    name: String,
}

impl Run {
    fn api<K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K>
    where
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.to_owned()), labels: Some(BTreeMap::from([(RUN_LABEL.to_owned(), self.name.clone())])), ..ObjectMeta::default() }
    }

    fn labelled(&self) -> ListParams {
        ListParams::default().labels(&format!("{RUN_LABEL}={}", self.name))
    }

    /// The workers' identity and rights (ConfigMaps in this namespace), the start ConfigMap, the Job.
    async fn create(&self, args: &KubeRunArgs) -> anyhow::Result<()> {
        let post = PostParams::default();
        self.api::<ServiceAccount>().create(&post, &ServiceAccount { metadata: self.meta(&self.name), ..ServiceAccount::default() }).await.context("creating the workers' ServiceAccount")?;
        let rule = PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: ["get", "list", "watch", "create"].map(str::to_owned).into(),
            ..PolicyRule::default()
        };
        self.api::<Role>().create(&post, &Role { metadata: self.meta(&self.name), rules: Some(vec![rule]) }).await.context("creating the workers' Role")?;
        let binding = RoleBinding {
            metadata: self.meta(&self.name),
            role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: self.name.clone() },
            subjects: Some(vec![Subject { kind: "ServiceAccount".into(), name: self.name.clone(), namespace: Some(self.namespace.clone()), ..Subject::default() }]),
        };
        self.api::<RoleBinding>().create(&post, &binding).await.context("creating the workers' RoleBinding")?;
        self.api::<ConfigMap>().create(&post, &ConfigMap { metadata: self.meta(&start_name(&self.name)), ..ConfigMap::default() }).await.context("creating the start ConfigMap")?;
        self.api::<Job>().create(&post, &self.job(args)).await.context("creating the Job")?;
        Ok(())
    }

    fn job(&self, args: &KubeRunArgs) -> Job {
        let mut command = ["starling-loadtest", "kube", "worker", "--run", &self.name].map(str::to_owned).to_vec();
        command.extend(["--users-per-worker".to_owned(), args.users_per_worker.to_string(), "--".to_owned()]);
        command.extend(args.scenario.iter().cloned());
        let password = args.password_secret.as_ref().map(|secret| EnvVar {
            name: "STARLING_LOADTEST_PASSWORD".into(),
            value_from: Some(EnvVarSource { secret_key_ref: Some(SecretKeySelector { name: secret.clone(), key: "password".into(), optional: None }), ..EnvVarSource::default() }),
            ..EnvVar::default()
        });
        let container = Container {
            name: "loadtest".into(),
            image: Some(args.image.clone()),
            command: Some(command),
            env: Some(password.into_iter().collect()),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity(args.cpu.clone()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let pods = PodTemplateSpec {
            metadata: Some(self.meta(&self.name)),
            spec: Some(PodSpec {
                containers: vec![container],
                restart_policy: Some("Never".into()),
                service_account_name: Some(self.name.clone()),
                ..PodSpec::default()
            }),
        };
        let workers = i32::try_from(args.workers).unwrap_or(i32::MAX);
        Job {
            metadata: self.meta(&self.name),
            spec: Some(JobSpec {
                completion_mode: Some("Indexed".into()),
                completions: Some(workers),
                // All at once: they measure one combined load. A retried pod would rerun its
                // slice alone, so none is.
                parallelism: Some(workers),
                backoff_limit: Some(0),
                template: pods,
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }

    /// Waits for every worker to be ready, releases them, and merges their reports.
    async fn coordinate(&self, args: &KubeRunArgs) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
        self.gather("ready", args.workers, deadline).await?;
        let start = SystemTime::now() + START_LEAD;
        let start_ms = start.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis().to_string();
        let release = json!({ "data": { "start_unix_ms": start_ms } });
        self.api::<ConfigMap>().patch(&start_name(&self.name), &PatchParams::default(), &Patch::Merge(&release)).await.context("releasing the workers")?;
        println!("all {} workers ready; started together", args.workers);
        let reports = self.gather("report", args.workers, deadline).await?;
        let mut parts = Vec::new();
        for (index, data) in reports {
            if let Some(error) = data.get("error") {
                bail!("worker {index} failed: {error}");
            }
            let report = data.get("report.json").with_context(|| format!("worker {index} sent no report"))?;
            parts.push((format!("worker-{index}"), serde_json::from_str(report).with_context(|| format!("worker {index}'s report"))?));
        }
        crate::merge::merge_reports(parts)
    }

    /// The data of the `kind` ConfigMaps of every worker, by index, once all `workers` exist;
    /// fails if the Job failed first or the deadline passed.
    async fn gather(&self, kind: &str, workers: u32, deadline: Instant) -> anyhow::Result<BTreeMap<u32, BTreeMap<String, String>>> {
        let prefix = format!("{}-{kind}-", self.name);
        loop {
            let listed = self.api::<ConfigMap>().list(&self.labelled()).await.context("listing the run's ConfigMaps")?;
            let found: BTreeMap<u32, BTreeMap<String, String>> = listed
                .items
                .into_iter()
                .filter_map(|map| {
                    let index = map.metadata.name.as_deref()?.strip_prefix(&prefix)?.parse().ok()?;
                    Some((index, map.data.unwrap_or_default()))
                })
                .collect();
            if found.len() as u32 >= workers {
                return Ok(found);
            }
            let job = self.api::<Job>().get_status(&self.name).await.context("reading the Job")?;
            if let Some(failed) = job.status.and_then(|status| status.failed).filter(|&failed| failed > 0) {
                bail!("{failed} worker pod(s) failed before sending their {kind}");
            }
            if Instant::now() >= deadline {
                bail!("{} of {workers} workers sent their {kind} in time", found.len());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn delete(&self) {
        let background = DeleteParams::background();
        let results = [
            self.api::<Job>().delete(&self.name, &background).await.err(),
            self.api::<ConfigMap>().delete_collection(&background, &self.labelled()).await.err(),
            self.api::<RoleBinding>().delete(&self.name, &background).await.err(),
            self.api::<Role>().delete(&self.name, &background).await.err(),
            self.api::<ServiceAccount>().delete(&self.name, &background).await.err(),
        ];
        for error in results.into_iter().flatten() {
            eprintln!("run {}: cleaning up: {error}", self.name);
        }
    }
}

fn start_name(run: &str) -> String {
    format!("{run}-start")
}

/// The scenario's command line for worker `index`: its slice of the accounts, its report file.
fn worker_argv(scenario: &[String], index: u64, users_per_worker: u64, report: &str) -> Vec<String> {
    let mut argv = vec!["starling-loadtest".to_owned()];
    argv.extend(scenario.iter().cloned());
    argv.extend(["--first-user".to_owned(), (1 + index * users_per_worker).to_string(), "--users".to_owned(), users_per_worker.to_string()]);
    argv.extend(["--json-out".to_owned(), report.to_owned()]);
    argv
}

/// A worker pod: ready, released, the scenario on its slice, the report (or the error) published.
pub fn worker(args: KubeWorkerArgs) -> anyhow::Result<()> {
    let index: u64 = std::env::var("JOB_COMPLETION_INDEX").context("JOB_COMPLETION_INDEX (set in an Indexed Job's pods)")?.parse()?;
    let report = std::env::temp_dir().join(format!("{}-{index}.json", args.run));
    let api = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let configmaps = api.block_on(async { anyhow::Ok(Api::<ConfigMap>::default_namespaced(Client::try_default().await?)) })?;
    let publish = |kind: &str, data: BTreeMap<String, String>| {
        let meta = ObjectMeta {
            name: Some(format!("{}-{kind}-{index}", args.run)),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_owned(), args.run.clone())])),
            ..ObjectMeta::default()
        };
        api.block_on(configmaps.create(&PostParams::default(), &ConfigMap { metadata: meta, data: Some(data), ..ConfigMap::default() })).map(drop)
    };
    publish("ready", BTreeMap::new()).context("announcing this worker ready")?;
    let start = api.block_on(wait_for_start(&configmaps, &start_name(&args.run)))?;
    std::thread::sleep(start.duration_since(SystemTime::now()).unwrap_or_default());
    let argv = worker_argv(&args.scenario, index, args.users_per_worker, &report.to_string_lossy());
    let ran = Cli::try_parse_from(argv).map_err(anyhow::Error::from).and_then(crate::run).and_then(|()| std::fs::read_to_string(&report).context("the report"));
    match ran {
        Ok(report) => publish("report", BTreeMap::from([("report.json".to_owned(), report)])).context("publishing the report"),
        Err(error) => {
            publish("report", BTreeMap::from([("error".to_owned(), format!("{error:#}"))])).context("publishing the error")?;
            Err(error)
        }
    }
}

/// The start time the coordinator writes once every worker is ready.
async fn wait_for_start(configmaps: &Api<ConfigMap>, name: &str) -> anyhow::Result<SystemTime> {
    loop {
        let start = configmaps.get_opt(name).await?.and_then(|map| map.data?.get("start_unix_ms")?.parse::<u64>().ok());
        if let Some(start) = start {
            return Ok(UNIX_EPOCH + Duration::from_millis(start));
        }
        tokio::time::sleep(POLL).await;
    }
}
