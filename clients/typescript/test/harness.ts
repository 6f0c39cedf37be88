/**
 * Test set-up: a fresh PostgreSQL database, a real `deskd serve` on a free
 * port, and tenants/users/tokens made with the same binary's CLI.
 *
 * Environment:
 *   DESKD_BIN        the deskd binary (default: <repo>/target/debug/deskd)
 *   DESKD_TEST_PG    PostgreSQL host:port (default 127.0.0.1:5432; trust auth, user postgres)
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

// build/test/harness.js → the repository root is four levels up.
const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "..", "..", "..", "..");
export const deskdBin = process.env["DESKD_BIN"] ?? join(repoRoot, "target", "debug", "deskd");
const pgHostPort = process.env["DESKD_TEST_PG"] ?? "127.0.0.1:5432";
const [pgHost = "127.0.0.1", pgPort = "5432"] = pgHostPort.split(":");

async function psql(sql: string, db = "postgres"): Promise<string> {
  const { stdout } = await run("psql", ["-h", pgHost, "-p", pgPort, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql]);
  return stdout.trim();
}

/** A database of its own, dropped by `drop()`. */
export class TestDatabase {
  private constructor(readonly name: string) {}

  static async create(): Promise<TestDatabase> {
    const name = `deskd_ts_${randomBytes(6).toString("hex")}`;
    await psql(`create database ${name}`);
    return new TestDatabase(name);
  }

  get appUrl(): string {
    return `postgres://deskd_app@${pgHost}:${pgPort}/${this.name}`;
  }

  get ownerUrl(): string {
    return `postgres://postgres@${pgHost}:${pgPort}/${this.name}`;
  }

  async drop(): Promise<void> {
    await psql(`drop database if exists ${this.name} with (force)`);
  }
}

/** A running `deskd serve`. */
export class DeskdServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly addr: string,
    readonly env: NodeJS.ProcessEnv,
    private readonly workDir: string,
    readonly logs: string[],
  ) {}

  get baseUrl(): string {
    return `http://${this.addr}`;
  }

  /** Starts the server and waits for its `deskd serving gRPC` log line. */
  static async start(db: TestDatabase, extraEnv: Record<string, string> = {}, timeoutMs = 60_000): Promise<DeskdServer> {
    if (!existsSync(deskdBin)) {
      throw new Error(`deskd binary not found at ${deskdBin} (build it, or set DESKD_BIN)`);
    }
    const workDir = mkdtempSync(join(tmpdir(), "deskd-ts-"));
    const env: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: process.env["HOME"] ?? workDir,
      DESKD_LISTEN_ADDR: "127.0.0.1:0",
      DESKD_ADMIN_ADDR: "127.0.0.1:0",
      DESKD_DATABASE_URL: db.appUrl,
      DESKD_DATABASE_OWNER_URL: db.ownerUrl,
      DESKD_JWT_SECRET: `ts-client-test-secret-${randomBytes(16).toString("hex")}`,
      DESKD_LOG_FORMAT: "json",
      DESKD_EXPORTS_DIR: join(workDir, "exports"),
      // Nothing listens there: welcome e-mails fail fast instead of reaching a real relay.
      DESKD_SMTP_PORT: "1",
      ...extraEnv,
    };
    const child = spawn(deskdBin, ["serve"], { cwd: workDir, env, stdio: ["ignore", "ignore", "pipe"] });
    const logs: string[] = [];
    const addr = await new Promise<string>((resolveAddr, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGTERM");
        reject(new Error(`deskd did not report its address within ${timeoutMs} ms:\n${logs.slice(-20).join("\n")}`));
      }, timeoutMs);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`deskd exited early (code ${code}, signal ${signal}):\n${logs.slice(-20).join("\n")}`));
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      const lines = createInterface({ input: child.stderr! });
      lines.on("line", (line) => {
        logs.push(line);
        if (!line.includes("deskd serving gRPC")) {
          return;
        }
        try {
          const event = JSON.parse(line) as { addr?: unknown; fields?: { addr?: unknown } };
          const found = event.addr ?? event.fields?.addr;
          if (typeof found === "string") {
            clearTimeout(timer);
            resolveAddr(found);
          }
        } catch {
          // not JSON: keep waiting
        }
      });
    });
    child.removeAllListeners("exit");
    return new DeskdServer(child, addr, env, workDir, logs);
  }

  /** Runs `deskd <args>` with the server's configuration and returns its trimmed stdout. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run(deskdBin, args, { cwd: this.workDir, env: this.env });
    return stdout.trim();
  }

  async createTenant(name: string): Promise<string> {
    return lastLine(await this.cli("tenant", "create", name));
  }

  async createUser(tenant: string, email: string, role: "admin" | "agent" | "viewer", name = email): Promise<string> {
    return lastLine(await this.cli("user", "create", "--tenant", tenant, "--email", email, "--role", role, "--name", name));
  }

  async mintToken(tenant: string, user: string): Promise<string> {
    return lastLine(await this.cli("token", "mint", "--tenant", tenant, "--user", user));
  }

  /** A tenant with an admin user and a JWT for that user. */
  async provision(label: string): Promise<{ tenant: string; user: string; token: string; email: string }> {
    const tenant = await this.createTenant(`${label}-${randomBytes(3).toString("hex")}`);
    const email = `admin-${randomBytes(4).toString("hex")}@${label}.example`;
    const user = await this.createUser(tenant, email, "admin", `${label} admin`);
    const token = await this.mintToken(tenant, user);
    return { tenant, user, token, email };
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.workDir, { recursive: true, force: true });
  }
}

function lastLine(s: string): string {
  const lines = s.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const last = lines[lines.length - 1];
  if (last === undefined) {
    throw new Error("deskd CLI printed nothing");
  }
  return last;
}
