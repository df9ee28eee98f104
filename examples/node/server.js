// The smallest Node.js app for corral: an `http` server on $PORT (loopback), as on Heroku.
"use strict";
const http = require("http");

const port = Number(process.env.PORT);
const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.end("ok\n");
    return;
  }
  res.setHeader("Content-Type", "application/json");
  res.end(JSON.stringify({
    hello: "node",
    pid: process.pid,
    worker: process.env.CORRAL_WORKER,
    client: req.headers["x-forwarded-for"],
  }));
});
server.listen(port, "127.0.0.1");
// corral stops a worker with SIGTERM: finish open requests, then exit.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
