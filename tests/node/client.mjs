// A Zoo client in another language: Node.js with @grpc/grpc-js, loading only the
// files in proto/ (the contract), plus the standard reflection service's own proto.
// Usage: node client.mjs HOST:PORT MODEL IMAGE  -> prints one JSON object.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, "..", "..", "proto");
const [address, model, imagePath] = process.argv.slice(2);
const options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

const zoo = grpc.loadPackageDefinition(
  protoLoader.loadSync(
    ["zoo_api/v1/models.proto", "zoo_api/v1/inference.proto", "zoo_api/v1/finetune.proto"],
    { ...options, includeDirs: [protoRoot] },
  ),
).zoo.v1;

const require = createRequire(import.meta.url);
const reflectionProto = join(
  dirname(require.resolve("@grpc/reflection/package.json")),
  "build/proto/grpc/reflection/v1alpha/reflection.proto",
);
const reflection = grpc.loadPackageDefinition(protoLoader.loadSync(reflectionProto, options))
  .grpc.reflection.v1alpha;  // what grpcio-reflection serves

const credentials = grpc.credentials.createInsecure();
const unary = (client, method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: Date.now() + 120_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );

function listServices() {
  const client = new reflection.ServerReflection(address, credentials);
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.on("data", (res) => {
      resolve(res.list_services_response.service.map((s) => s.name));
      call.end();
    });
    call.on("error", reject);
    call.write({ list_services: "" });
  });
}

const models = new zoo.ModelService(address, credentials);
const inference = new zoo.InferenceService(address, credentials);
const listed = await unary(models, "ListModels", { pattern: "mobilenet_v2*" });
const classified = await unary(inference, "Classify", {
  model: { name: model },
  images: [readFileSync(imagePath)],
  top_k: 3,
});
let notFound = null;
try {
  await unary(models, "GetModel", { model: { name: "no_such_model" } });
} catch (err) {
  notFound = grpc.status[err.code];
}
console.log(
  JSON.stringify({
    models: listed.models.map((m) => m.name),
    predictions: classified.results[0].predictions,
    not_found: notFound,
    services: await listServices(),
  }),
);
process.exit(0);
