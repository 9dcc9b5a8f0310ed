// Runs SQL files through the ClickHouse JDBC driver, the way DBeaver, Metabase and Tableau
// connect: `java -cp <driver classpath> RunQueries.java <jdbc url> <file.sql>...` (JDK 17
// single-file source launch). Prints one line per file, "ok <file> rows=N cols=M" or
// "error <file> <message>", then tries an INSERT, which a read-only endpoint must refuse.
// User and password come from CH_USER / CH_PASSWORD.
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class RunQueries {
    public static void main(String[] args) throws Exception {
        // DriverManager does not see drivers of the classpath from a source-launched class.
        Class.forName("com.clickhouse.jdbc.ClickHouseDriver");
        Properties props = new Properties();
        props.setProperty("user", System.getenv().getOrDefault("CH_USER", "default"));
        props.setProperty("password", System.getenv().getOrDefault("CH_PASSWORD", ""));
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("server " + meta.getDatabaseProductName() + " "
                    + meta.getDatabaseProductVersion());
            for (int i = 1; i < args.length; i++) {
                Path file = Paths.get(args[i]);
                String sql = Files.readString(file).trim();
                if (sql.endsWith(";")) {
                    sql = sql.substring(0, sql.length() - 1);
                }
                try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
                    int cols = rs.getMetaData().getColumnCount();
                    long rows = 0;
                    while (rs.next()) {
                        for (int c = 1; c <= cols; c++) {
                            rs.getObject(c);
                        }
                        rows++;
                    }
                    System.out.println("ok " + file.getFileName() + " rows=" + rows + " cols=" + cols);
                } catch (SQLException e) {
                    System.out.println("error " + file.getFileName() + " " + oneLine(e));
                }
            }
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO events (event_id) VALUES ('jdbc')");
                System.out.println("insert accepted");
            } catch (SQLException e) {
                System.out.println("insert refused " + oneLine(e));
            }
        }
    }

    private static String oneLine(SQLException e) {
        return String.valueOf(e.getMessage()).replace('\n', ' ');
    }
}
