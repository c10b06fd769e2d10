# Image of the operator-telemetry daemon. Build from the repository root:
#   docker build -t agijobs/operator-telemetry .
#   docker build -f apps/operator/Dockerfile -t agijobs/operator-telemetry .
# apps/operator/Dockerfile is a byte-for-byte copy of this file (a test checks it).

ARG NODE_IMAGE=node:20-slim

# Build stage: every dependency, then the TypeScript compiler. No package needs its install
# script to build or run the daemon, so none runs (--ignore-scripts).
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY apps/operator/ apps/operator/
RUN npx tsc -p apps/operator/tsconfig.json

# Final stage: production dependencies and the compiled daemon only.
FROM ${NODE_IMAGE} AS runtime

# tini runs as PID 1 and forwards SIGTERM to the daemon. Node as PID 1 ignores SIGTERM until
# the daemon has installed its handler, which happens only after the configuration and
# the signer key are loaded; tini makes `docker stop` work during that time too.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/apps/operator/dist apps/operator/dist

# The image's `node` user (uid 1000) runs the daemon. It must be able to write the state
# volume; a bind-mounted host folder needs `chown 1000:1000`.
RUN mkdir -p /data/logs /data/state && chown node:node /data/state
ENV ENERGY_LOG_DIR=/data/logs \
  TELEMETRY_STATE_FILE=/data/state/operator-telemetry-state.json \
  TELEMETRY_METRICS_PORT=9464
VOLUME ["/data/logs", "/data/state"]
USER node

# Metrics and /healthz. The daemon listens on TELEMETRY_METRICS_HOST, 127.0.0.1 unless set:
# set it to 0.0.0.0 and publish the port to scrape from outside the container.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.TELEMETRY_METRICS_PORT + '/healthz', { signal: AbortSignal.timeout(4000) }).then((response) => process.exit(response.ok ? 0 : 1), () => process.exit(1))"]

# The daemon stops within 8 s of SIGTERM; `docker stop` waits 10 s by default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "apps/operator/dist/telemetry.js"]
