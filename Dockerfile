# timeshare workers and CLI. The CLI runs the TypeScript sources through tsx (bin/timeshare).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# npm install, not npm ci: see scripts/ensure-deps.sh.
RUN npm install --omit=dev --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY examples ./examples
# The workflow bundle, built once into .cache/bundles: workers load it instead of running webpack.
COPY scripts/build-workflow-bundle.ts ./scripts/
RUN npx tsx scripts/build-workflow-bundle.ts
ENTRYPOINT ["/app/bin/timeshare"]
CMD ["--help"]
