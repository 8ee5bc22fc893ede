//! Upstream connection tasks (a plain-http route's pooled connections, `proxy::upstream`):
//! named and tracked like every task. They end with their exchange, or once the server closes
//! the idle ones after the proxy has drained (`proxy::upstream::Connections::close`).

use super::Tasks;
use crate::proxy::upstream::Spawner;
use std::future::Future;
use std::pin::Pin;

pub struct UpstreamTasks {
    tasks: Tasks,
}

impl UpstreamTasks {
    pub fn new(tasks: Tasks) -> Self {
        UpstreamTasks { tasks }
    }
}

impl Spawner for UpstreamTasks {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.tasks.spawn(name, task);
    }
}
