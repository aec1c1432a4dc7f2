// comlink's Node adapter ships as an ES module at this path; borrow its UMD build's types.
declare module "comlink/dist/esm/node-adapter.mjs" {
  import nodeEndpoint from "comlink/dist/umd/node-adapter";
  export default nodeEndpoint;
}
