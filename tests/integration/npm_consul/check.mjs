// The npm `consul` package, unmodified, against a roost agent: register with a TTL check, heartbeat,
// read through health/catalog, watch a change through a blocking query, deregister.
// Usage: node check.mjs HOST PORT. Prints one JSON line of results; exits 1 on a failed step.
import Consul from "consul";

const [host, port] = process.argv.slice(2);
const consul = new Consul({ host, port: Number(port) });
const out = {};

function fail(step, detail) {
  console.log(JSON.stringify({ ok: false, step, detail: String(detail), ...out }));
  process.exit(1);
}

try {
  out.leader = await consul.status.leader();
  await consul.agent.service.register({
    name: "npm-web",
    id: "npm-web-1",
    address: "127.0.0.1",
    port: 8181,
    tags: ["v1"],
    meta: { team: "js" },
    check: { ttl: "30s", deregistercriticalserviceafter: "5m" },
  });
  const before = await consul.health.service({ service: "npm-web", passing: true });
  out.passingBeforeHeartbeat = before.length;
  await consul.agent.check.pass({ id: "service:npm-web-1", note: "up" });
  const after = await consul.health.service({ service: "npm-web", passing: true });
  out.passingAfterHeartbeat = after.length;
  out.service = after[0]?.Service;
  out.catalog = await consul.catalog.service.list();
  out.nodes = (await consul.catalog.service.nodes("npm-web")).map((n) => n.ServiceID);
  out.agentServices = Object.keys(await consul.agent.service.list());

  // A watch (blocking queries) sees the second instance arrive.
  const seen = await new Promise((resolve, reject) => {
    const watch = consul.watch({
      method: consul.health.service,
      options: { service: "npm-web", passing: true, wait: "10s" },
    });
    let first = true;
    const timer = setTimeout(() => {
      watch.end();
      reject(new Error("the watch saw no change in 8 s"));
    }, 8000);
    watch.on("change", async (data) => {
      if (first) {
        first = false;
        await consul.agent.service.register({ name: "npm-web", id: "npm-web-2", port: 8182 });
        return;
      }
      clearTimeout(timer);
      watch.end();
      resolve(data.map((e) => e.Service.ID).sort());
    });
    watch.on("error", (err) => {
      clearTimeout(timer);
      watch.end();
      reject(err);
    });
  });
  out.watched = seen;
  await consul.agent.service.deregister("npm-web-1");
  await consul.agent.service.deregister({ id: "npm-web-2" });
  out.afterDeregister = (await consul.health.service("npm-web")).length;
} catch (err) {
  fail("call", err?.message ?? err);
}
console.log(JSON.stringify({ ok: true, ...out }));
