# timeshare workers and CLI. The CLI runs compiled JavaScript from dist/ (bin/timeshare), built here.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# npm install, not npm ci: see scripts/ensure-deps.sh.
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY examples ./examples
# The trajectory statistics `timeshare bench --workload-csv data/...` reads.
COPY data ./data
# dist/ compiled once; the compiler and the other dev dependencies are not kept.
COPY scripts/build.sh ./scripts/
RUN bash scripts/build.sh && npm prune --omit=dev --no-audit --no-fund
# The workflow bundle, built once into .cache/bundles: workers load it instead of running webpack.
COPY scripts/build-workflow-bundle.ts ./scripts/
RUN npx tsx scripts/build-workflow-bundle.ts
ENTRYPOINT ["/app/bin/timeshare"]
CMD ["--help"]
