package io.nadi.flink;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real {@code nadi standalone} process for a test: free 127.0.0.1 ports, its own temporary
 * data directory, killed and deleted on {@link #close()}. The binary comes from the system
 * property {@code nadi.bin} (set by build.sh), else {@code NADI_BIN}, else
 * {@code target/debug/nadi} above the working directory.
 *
 * <p>{@link #startWithAuth} starts it with {@code --auth required --token-file F --superusers
 * admin}, the token file holding tokens made with {@code nadi auth token} for {@code admin}
 * and the principals asked for; {@link #token} hands them out, and {@link #cli} runs as
 * {@code admin}.
 */
public final class NadiServer implements AutoCloseable {
    /** The superuser of a server started with {@link #startWithAuth}. */
    public static final String ADMIN = "admin";

    private final Process process;
    private final Path dataDir;
    private final String controller;
    private final String binary;
    /** Principal to token; empty without auth. */
    private final Map<String, String> tokens;

    private NadiServer(Process process, Path dataDir, String controller, String binary, Map<String, String> tokens) {
        this.process = process;
        this.dataDir = dataDir;
        this.controller = controller;
        this.binary = binary;
        this.tokens = tokens;
    }

    public static String binary() {
        String bin = System.getProperty("nadi.bin", System.getenv("NADI_BIN"));
        if (bin == null) {
            bin = "../../target/debug/nadi";
        }
        if (!new File(bin).canExecute()) {
            throw new IllegalStateException("nadi binary not found at " + bin + ": build it with cargo build -p nadi-server");
        }
        return bin;
    }

    /** An open server (no authentication). */
    public static NadiServer start() throws IOException, InterruptedException {
        return start(Files.createTempDirectory("nadi-flink-it"), List.of(), Map.of());
    }

    /**
     * A server that requires a token on every call: {@code admin} is its superuser, and each of
     * {@code principals} has a token but no grant yet (give them with {@code cli("acl", "grant", ...)}).
     */
    public static NadiServer startWithAuth(String... principals) throws IOException, InterruptedException {
        Path dir = Files.createTempDirectory("nadi-flink-it");
        Path tokenFile = dir.resolve("tokens.toml");
        Map<String, String> tokens = new LinkedHashMap<>();
        List<String> all = new ArrayList<>(List.of(ADMIN));
        all.addAll(Arrays.asList(principals));
        for (String p : all) {
            tokens.put(p, newToken(binary(), dir, p, tokenFile));
        }
        return start(dir, List.of("--auth", "required", "--token-file", tokenFile.toString(), "--superusers", ADMIN),
                tokens);
    }

    /** {@code nadi auth token P}: the token from stdout; its entry (stderr) appended to the token file. */
    private static String newToken(String bin, Path dir, String principal, Path tokenFile)
            throws IOException, InterruptedException {
        Path out = Files.createTempFile(dir, "token", ".out");
        Process p = new ProcessBuilder(bin, "auth", "token", principal).redirectOutput(out.toFile())
                .redirectError(ProcessBuilder.Redirect.appendTo(tokenFile.toFile())).start();
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            throw new IOException("nadi auth token " + principal + " failed");
        }
        String token = Files.readString(out, StandardCharsets.UTF_8).strip();
        Files.delete(out);
        return token;
    }

    private static NadiServer start(Path dir, List<String> extraArgs, Map<String, String> tokens)
            throws IOException, InterruptedException {
        String bin = binary();
        int[] ports = freePorts(3);
        String controller = "http://127.0.0.1:" + ports[0];
        List<String> cmd = new ArrayList<>(List.of(bin, "standalone", "--data-dir", dir.resolve("data").toString(),
                "--controller-listen", "127.0.0.1:" + ports[0], "--segment-listen", "127.0.0.1:" + ports[1],
                "--http-listen", "127.0.0.1:" + ports[2], "--log-file-size", "20MiB"));
        cmd.addAll(extraArgs);
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().remove("NADI_TOKEN");
        pb.redirectErrorStream(true).redirectOutput(dir.resolve("nadi.log").toFile());
        NadiServer server = new NadiServer(pb.start(), dir, controller, bin, Map.copyOf(tokens));
        server.awaitReady();
        return server;
    }

    /** The token of {@code principal} (a server from {@link #startWithAuth}). */
    public String token(String principal) {
        String t = tokens.get(principal);
        if (t == null) {
            throw new IllegalArgumentException("no token for " + principal + " (started with " + tokens.keySet() + ")");
        }
        return t;
    }

    /** A client of this server; as {@code admin} if it requires a token. */
    public NadiClient adminClient() {
        return new NadiClient(controller, tokens.get(ADMIN));
    }

    private static int[] freePorts(int n) throws IOException {
        List<ServerSocket> sockets = new ArrayList<>();
        try {
            int[] ports = new int[n];
            for (int i = 0; i < n; i++) {
                ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
                sockets.add(s);
                ports[i] = s.getLocalPort();
            }
            return ports;
        } finally {
            for (ServerSocket s : sockets) {
                s.close();
            }
        }
    }

    /** Waits (at most 30 s) until the controller answers a request. */
    private void awaitReady() throws InterruptedException, IOException {
        long deadline = System.currentTimeMillis() + 30_000;
        try (NadiClient c = adminClient()) {
            while (true) {
                if (!process.isAlive()) {
                    throw new IOException("nadi standalone exited early: " + log());
                }
                try {
                    c.getStream("ready-check", "ready-check");
                    return;
                } catch (NadiException e) {
                    if (e.reason().startsWith("NOT_FOUND")) {
                        return;
                    }
                    if (System.currentTimeMillis() > deadline) {
                        throw new IOException("nadi standalone not ready after 30 s: " + e.getMessage());
                    }
                }
            }
        }
    }

    public String controller() {
        return controller;
    }

    public String log() throws IOException {
        return Files.readString(dataDir.resolve("nadi.log"), StandardCharsets.UTF_8);
    }

    /**
     * Runs a client command of the real CLI against this server (as {@code admin} if it requires
     * a token, given in {@code NADI_TOKEN}); returns stdout, fails on exit != 0.
     */
    public String cli(String... args) throws IOException, InterruptedException {
        return cli(null, args);
    }

    /** As {@link #cli(String...)}, with {@code stdin} (may be null) as standard input. */
    public String cli(byte[] stdin, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(binary);
        cmd.addAll(Arrays.asList(args));
        cmd.add("--controller");
        cmd.add(controller);
        Path out = Files.createTempFile(dataDir, "cli", ".out");
        Path err = Files.createTempFile(dataDir, "cli", ".err");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
        pb.environment().remove("NADI_TOKEN");
        if (tokens.containsKey(ADMIN)) {
            pb.environment().put("NADI_TOKEN", tokens.get(ADMIN));
        }
        Process p = pb.start();
        if (stdin != null) {
            p.getOutputStream().write(stdin);
        }
        p.getOutputStream().close();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("nadi " + String.join(" ", args) + " timed out");
        }
        String stdout = Files.readString(out, StandardCharsets.UTF_8);
        if (p.exitValue() != 0) {
            throw new IOException("nadi " + String.join(" ", args) + " failed (" + p.exitValue() + "): "
                    + Files.readString(err, StandardCharsets.UTF_8));
        }
        return stdout;
    }

    @Override
    public void close() throws IOException, InterruptedException {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        try (Stream<Path> files = Files.walk(dataDir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
