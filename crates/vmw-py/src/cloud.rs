//! [`VMWare`]: pycloudlib's `VMWare` cloud (its `BaseCloud` API) on
//! vmw-cloud's [`Cloud`].
//!
//! Images are named by their absolute inventory path (what
//! `released_image` and `snapshot` return, and what `launch` and
//! `delete_image` take; a bare name means the VM of that name in the
//! configured folder, never a search). Beyond pycloudlib: `launch` honours
//! `instance_type`, `username` and `wait=False` and takes every vmw launch
//! option by keyword; `launch_many` launches several at once.

use std::time::Duration;

use pyo3::exceptions::PyNotImplementedError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use vmw_cloud::{
    CancellationToken, Cloud, CloudBuilder, Environment, InstanceType, KeyPair, LaunchOptions,
    WaitStage,
};

use crate::config::{self, Given};
use crate::errors::{clean_errors, cleanup_error, exception_list, invalid, to_py};
use crate::instance::VMWareInstance;
use crate::runtime::block_on;

/// pycloudlib's VMware cloud, on vmw's engine.
#[pyclass(module = "vmw._native", subclass)]
pub(crate) struct VMWare {
    cloud: Cloud,
    /// The instances this object launched (pycloudlib's attribute).
    created_instances: Py<PyList>,
    /// The images this object made, by path (pycloudlib's attribute).
    created_images: Py<PyList>,
}

/// User data as bytes: a `str` is encoded as UTF-8.
fn bytes_of(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Vec<u8>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Some(s.extract::<String>()?.into_bytes()));
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    Err(invalid(
        value.py(),
        format!(
            "{what} must be str or bytes, not {}",
            value.get_type().name()?
        ),
    ))
}

/// The keyword arguments of `launch` beyond pycloudlib's, as a vmw
/// [`LaunchOptions`]; an unknown keyword is an error naming it.
struct Extra {
    options: LaunchOptions,
    username: Option<String>,
}

fn launch_options(
    py: Python<'_>,
    instance_type: Option<&str>,
    user_data: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Extra> {
    let mut options = LaunchOptions {
        user_data: bytes_of(user_data, "user_data")?,
        ..LaunchOptions::default()
    };
    if let Some(t) = instance_type {
        options.instance_type = Some(t.parse::<InstanceType>().map_err(|e| to_py(py, e))?);
    }
    let mut username = None;
    if let Some(kwargs) = kwargs {
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
            if value.is_none() {
                continue;
            }
            match key.as_str() {
                "username" => username = Some(value.extract()?),
                "wait" => {
                    options.wait = match value.extract::<bool>() {
                        Ok(true) => WaitStage::Ready,
                        Ok(false) => WaitStage::None,
                        // A stage by name: none, ip, ssh or ready.
                        Err(_) => value
                            .extract::<String>()?
                            .parse::<WaitStage>()
                            .map_err(|e| to_py(py, e))?,
                    }
                }
                "name" => options.name = Some(value.extract()?),
                "vendor_data" => options.vendor_data = bytes_of(Some(&value), "vendor_data")?,
                "metadata" => {
                    let text: String = match value.cast::<PyDict>() {
                        // A dict is written as YAML through JSON, which
                        // YAML reads.
                        Ok(d) => py.import("json")?.call_method1("dumps", (d,))?.extract()?,
                        Err(_) => value.extract()?,
                    };
                    options.metadata = Some(
                        LaunchOptions::metadata_from_yaml(&text, "metadata")
                            .map_err(|e| to_py(py, e))?,
                    );
                }
                "disk_size" | "disk_gib" => options.disk_gib = Some(value.extract()?),
                "cpus" => options.cpus = Some(value.extract()?),
                "memory" | "memory_mb" => options.memory_mb = Some(value.extract()?),
                "network" => options.network = Some(value.extract()?),
                "linked" | "linked_clone" => options.linked_clone = value.extract()?,
                "console" | "console_log" => options.console_log = Some(value.extract()?),
                "keep_on_failure" => {
                    let dir: String = value.str()?.extract()?;
                    options.keep_on_failure = Some(dir.into());
                }
                "ip_timeout" => {
                    options.ip_timeout = Some(Duration::from_secs_f64(value.extract()?))
                }
                "ready_timeout" => {
                    options.ready_timeout = config::minutes(value.extract()?);
                }
                "extra_config" => {
                    let pairs: Vec<(String, String)> = match value.cast::<PyDict>() {
                        Ok(d) => d
                            .extract::<std::collections::BTreeMap<String, String>>()?
                            .into_iter()
                            .collect(),
                        Err(_) => value.extract()?,
                    };
                    options.extra_config = pairs;
                }
                other => {
                    return Err(invalid(
                        py,
                        format!(
                            "launch() got an unknown keyword argument {other:?}; vmw takes username, wait, name, vendor_data, metadata, disk_size, cpus, memory, network, linked, console, keep_on_failure, ip_timeout, ready_timeout and extra_config"
                        ),
                    ));
                }
            }
        }
    }
    options.check_values().map_err(|e| to_py(py, e))?;
    options.hardware().map_err(|e| to_py(py, e))?;
    options.check_extra_config().map_err(|e| to_py(py, e))?;
    Ok(Extra { options, username })
}

impl VMWare {
    fn image(&self, py: Python<'_>, image_id: &str) -> PyResult<vmw_cloud::Image> {
        self.cloud.image(image_id).map_err(|e| to_py(py, e))
    }

    fn record_instance(&self, py: Python<'_>, instance: &Py<VMWareInstance>) -> PyResult<()> {
        self.created_instances.bind(py).append(instance)
    }
}

#[pymethods]
impl VMWare {
    /// The cloud type, as pycloudlib names it.
    #[classattr]
    #[pyo3(name = "_type")]
    fn cloud_type() -> &'static str {
        "vmware"
    }

    #[new]
    #[pyo3(signature = (
        tag,
        timestamp_suffix = true,
        config_file = None,
        *,
        server = None,
        username = None,
        password = None,
        datacenter = None,
        datastore = None,
        folder = None,
        insecure_transport = None,
        resource_pool = None,
        network = None,
        concurrency = None,
        ssh_user = None,
        ssh_port = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tag: &str,
        timestamp_suffix: bool,
        config_file: Option<&Bound<'_, PyAny>>,
        server: Option<String>,
        username: Option<String>,
        password: Option<String>,
        datacenter: Option<String>,
        datastore: Option<String>,
        folder: Option<String>,
        insecure_transport: Option<bool>,
        resource_pool: Option<String>,
        network: Option<String>,
        concurrency: Option<usize>,
        ssh_user: Option<String>,
        ssh_port: Option<u16>,
    ) -> PyResult<Self> {
        let mut given = Given {
            config_file: match config_file {
                Some(f) if !f.is_none() => Some(f.str()?.extract()?),
                _ => None,
            },
            concurrency,
            ssh_user,
            ssh_port,
            ..Given::default()
        };
        given.overrides.server = server;
        given.overrides.username = username;
        given.password(password);
        given.overrides.datacenter = datacenter;
        given.overrides.datastore = datastore;
        given.overrides.folder = folder;
        given.overrides.insecure_transport = insecure_transport;
        given.overrides.resource_pool = resource_pool;
        given.overrides.network = network;
        let env = Environment::from_process();
        let loaded = config::loader(&given, &env)
            .load()
            .map_err(|e| to_py(py, e.into()))?;
        let settings = config::settings(&given, &env).map_err(|e| to_py(py, e))?;
        let builder = CloudBuilder::new(tag)
            .timestamp(timestamp_suffix)
            .config(loaded.config)
            .environment(env)
            .settings(settings);
        let cloud = block_on(py, None, builder.build())?.map_err(|e| to_py(py, e))?;
        Ok(Self {
            cloud,
            created_instances: PyList::empty(py).unbind(),
            created_images: PyList::empty(py).unbind(),
        })
    }

    /// The tag every VM of this cloud is named after (timestamped unless
    /// `timestamp_suffix=False`).
    #[getter]
    fn tag(&self) -> String {
        self.cloud.tag().to_string()
    }

    /// The `[vmware]` configuration in use, without the password.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.cloud.config();
        let d = PyDict::new(py);
        d.set_item("server", c.server_display())?;
        d.set_item("username", &c.username)?;
        d.set_item("datacenter", &c.datacenter)?;
        d.set_item("datastore", &c.datastore)?;
        d.set_item("folder", &c.folder)?;
        d.set_item("insecure_transport", c.insecure_transport)?;
        d.set_item("resource_pool", c.resource_pool.as_deref())?;
        d.set_item("network", c.network.as_deref())?;
        let key = self.cloud.key_pair();
        d.set_item("public_key_path", key.public_path.as_str())?;
        d.set_item("private_key_path", key.private_path.as_str())?;
        d.set_item("key_name", &key.name)?;
        Ok(d)
    }

    /// The SSH key pair instances get: an object with `public_key_path`,
    /// `private_key_path`, `name` and `public_key_content`.
    #[getter]
    fn key_pair<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.cloud.key_pair();
        let ns = py.import("types")?.getattr("SimpleNamespace")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("public_key_path", key.public_path.as_str())?;
        kwargs.set_item("private_key_path", key.private_path.as_str())?;
        kwargs.set_item("name", &key.name)?;
        kwargs.set_item("public_key_content", key.public_key.to_string())?;
        ns.call((), Some(&kwargs))
    }

    /// The instances this object launched.
    #[getter]
    fn created_instances<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.created_instances.bind(py).clone()
    }

    /// The images this object made (their paths).
    #[getter]
    fn created_images<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.created_images.bind(py).clone()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Cleans up; raises `CleanupError` with every failure.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        let errors = self.clean_errors(py)?;
        if errors.is_empty() {
            Ok(false)
        } else {
            Err(cleanup_error(py, errors))
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "VMWare(tag={:?}, folder={:?})",
            self.cloud.tag().as_str(),
            self.cloud.config().folder
        )
    }

    /// The releases that have a `TEMPLATE-cloud-init-<release>` VM in the
    /// folder.
    fn releases(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let cloud = self.cloud.clone();
        block_on(py, None, async move { cloud.releases().await })?.map_err(|e| to_py(py, e))
    }

    /// The image of `release`: the path of `TEMPLATE-cloud-init-<release>`
    /// in the folder; an unknown release raises `UnknownReleaseError`
    /// listing those there are.
    #[pyo3(signature = (release, **_kwargs))]
    fn released_image(
        &self,
        py: Python<'_>,
        release: &str,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let cloud = self.cloud.clone();
        let release = release.to_owned();
        let image = block_on(
            py,
            None,
            async move { cloud.released_image(&release).await },
        )?
        .map_err(|e| to_py(py, e))?;
        Ok(image.path().to_string())
    }

    /// The same as `released_image`: vSphere has no daily images.
    #[pyo3(signature = (release, **kwargs))]
    fn daily_image(
        &self,
        py: Python<'_>,
        release: &str,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        self.released_image(py, release, kwargs)
    }

    /// Image serials do not exist on vSphere: `NotImplementedError`.
    fn image_serial(&self, image_id: &str) -> PyResult<String> {
        Err(PyNotImplementedError::new_err(format!(
            "vSphere templates carry no serial (asked for {image_id})"
        )))
    }

    /// The image a name means: the template or vmw image of exactly that
    /// name in the folder, else the first whose name contains it.
    fn get_image_id_from_name(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let cloud = self.cloud.clone();
        let name = name.to_owned();
        let image = block_on(py, None, async move { cloud.image_by_name(&name).await })?
            .map_err(|e| to_py(py, e))?;
        Ok(image.path().to_string())
    }

    /// The VM `instance_id` (a name in the folder, or an absolute path),
    /// reached over SSH as `username` when given.
    #[pyo3(signature = (instance_id, *, username = None, **_kwargs))]
    fn get_instance(
        &self,
        py: Python<'_>,
        instance_id: &str,
        username: Option<String>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<VMWareInstance> {
        let cloud = self.cloud.clone();
        let name = instance_id.to_owned();
        let instance = block_on(py, None, async move { cloud.get_instance(&name).await })?
            .map_err(|e| to_py(py, e))?;
        VMWareInstance::new(py, instance, username)
    }

    /// Launches an instance of `image_id` and waits until it is ready
    /// (`wait=False`: until it is powered on). A failed launch removes what
    /// it made; Ctrl-C does too, then raises `KeyboardInterrupt`.
    #[pyo3(signature = (image_id, instance_type = None, user_data = None, **kwargs))]
    fn launch(
        &self,
        py: Python<'_>,
        image_id: &str,
        instance_type: Option<&str>,
        user_data: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<VMWareInstance>> {
        let extra = launch_options(py, instance_type, user_data, kwargs)?;
        let image = self.image(py, image_id)?;
        let token = CancellationToken::new();
        let cloud = self.cloud.cancel_on(&token);
        let options = extra.options;
        let launched = block_on(py, Some(&token), async move {
            cloud.launch(&image, &options).await
        })?
        .map_err(|e| to_py(py, e))?;
        let instance = Py::new(py, VMWareInstance::new(py, launched, extra.username)?)?;
        self.record_instance(py, &instance)?;
        Ok(instance)
    }

    /// Launches `count` instances of `image_id` at once (at most the
    /// cloud's concurrency in flight); raises the first failure after the
    /// others are done, having removed what failed.
    #[pyo3(signature = (image_id, count, instance_type = None, user_data = None, **kwargs))]
    fn launch_many(
        &self,
        py: Python<'_>,
        image_id: &str,
        count: usize,
        instance_type: Option<&str>,
        user_data: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Py<VMWareInstance>>> {
        let extra = launch_options(py, instance_type, user_data, kwargs)?;
        let image = self.image(py, image_id)?;
        let token = CancellationToken::new();
        let cloud = self.cloud.cancel_on(&token);
        let options = extra.options;
        let fleet = block_on(py, Some(&token), async move {
            cloud.launch_many(&image, count, &options).await
        })?
        .map_err(|e| to_py(py, e))?;
        let mut out = Vec::with_capacity(fleet.instances.len());
        for launched in fleet.instances {
            let instance = Py::new(
                py,
                VMWareInstance::new(py, launched, extra.username.clone())?,
            )?;
            self.record_instance(py, &instance)?;
            out.push(instance);
        }
        if let Some((_, first)) = fleet.failures.into_iter().next() {
            return Err(to_py(py, first));
        }
        Ok(out)
    }

    /// Clones `instance` into an image (cleaning the guest first when
    /// `clean`); returns its path, which `launch` takes.
    #[pyo3(signature = (instance, clean = true, **_kwargs))]
    fn snapshot(
        &self,
        py: Python<'_>,
        instance: PyRef<'_, VMWareInstance>,
        clean: bool,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let token = CancellationToken::new();
        let cloud = self.cloud.cancel_on(&token);
        let inner = instance.inner().clone();
        drop(instance);
        let image = block_on(py, Some(&token), async move {
            cloud.snapshot(&inner, clean).await
        })?
        .map_err(|e| to_py(py, e))?;
        let path = image.path().to_string();
        self.created_images.bind(py).append(&path)?;
        Ok(path)
    }

    /// Deletes an image (it must carry vmw's marker; templates never).
    #[pyo3(signature = (image_id, **_kwargs))]
    fn delete_image(
        &self,
        py: Python<'_>,
        image_id: &str,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let image = self.image(py, image_id)?;
        let cloud = self.cloud.clone();
        block_on(py, None, async move { cloud.delete_image(&image).await })?
            .map(|_| ())
            .map_err(|e| to_py(py, e))
    }

    /// Deletes everything this cloud made, instances then images, trying
    /// all of them; returns the failures (empty when all went).
    fn clean<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let errors = self.clean_errors(py)?;
        exception_list(py, errors)
    }

    /// Resolves what runs killed outright (SIGKILL, OOM, a reboot) left on
    /// this vCenter and folder, from vmw's journal: their VMs are marked
    /// as left by an interrupted run, so that vmw's `clean` of their tag
    /// removes them; nothing else is touched. Launches run it once by
    /// themselves. Returns a dict: `marked` and `foreign` (paths),
    /// `pending` (paths vCenter may still be making), `live` (records of
    /// runs still going), `nothing_there`, and `errors` (messages).
    fn recover<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cloud = self.cloud.clone();
        let r =
            block_on(py, None, async move { cloud.recover().await })?.map_err(|e| to_py(py, e))?;
        let paths = |v: &[vmw_cloud::VmRef]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let out = PyDict::new(py);
        out.set_item("marked", paths(&r.marked))?;
        out.set_item("foreign", paths(&r.foreign))?;
        out.set_item("pending", paths(&r.pending))?;
        out.set_item("live", r.live)?;
        out.set_item("nothing_there", r.nothing_there)?;
        out.set_item(
            "errors",
            r.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )?;
        Ok(out)
    }

    /// Uses another key pair from now on (instances already launched keep
    /// theirs).
    #[pyo3(signature = (public_key_path, private_key_path = None, name = None))]
    fn use_key(
        &self,
        py: Python<'_>,
        public_key_path: &Bound<'_, PyAny>,
        private_key_path: Option<&Bound<'_, PyAny>>,
        name: Option<String>,
    ) -> PyResult<()> {
        let public: String = public_key_path.str()?.extract()?;
        let private: Option<String> = match private_key_path {
            Some(p) if !p.is_none() => Some(p.str()?.extract()?),
            _ => None,
        };
        let name = name.unwrap_or_else(|| self.cloud.key_pair().name);
        let key = KeyPair::from_files(
            camino::Utf8Path::new(&public),
            private.as_deref().map(camino::Utf8Path::new),
            name,
        )
        .map_err(|e| to_py(py, e))?;
        self.cloud.use_key(key);
        Ok(())
    }
}

impl VMWare {
    /// Runs vmw's clean; Ctrl-C stops it starting more deletions.
    fn clean_errors(&self, py: Python<'_>) -> PyResult<Vec<PyErr>> {
        let token = CancellationToken::new();
        let cloud = self.cloud.cancel_on(&token);
        let result = block_on(py, Some(&token), async move { cloud.clean().await })?;
        Ok(match result {
            Ok(_) => Vec::new(),
            Err(e) => clean_errors(py, e),
        })
    }
}
