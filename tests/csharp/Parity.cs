// Compiled with the LessPy sources (it reaches their internal functions) by tests/test_parity.py, which writes the
// questions and compares the answers with what Python says.
//   mono Parity.exe QUESTIONS ANSWERS
// QUESTIONS: UTF-8 lines "grow <payload bytes>", "key <field name>", "snake <C# name>", "runtime [NAME=value ...]"
// (the environment variables Jupyter's runtime dir depends on: those named are set, the others unset).
// ANSWERS: one UTF-8 line per question: the question, a tab, what C# makes of it (Mapping.GrownSize, WireType.Key,
// WireType.SnakeCase, WorkFolder.JupyterRuntimeDir).
using System;
using System.IO;
using System.Text;

namespace LessPy
{
    static class Parity
    {
        static int Main(string[] args)
        {
            var utf8 = new UTF8Encoding(false, true);
            var answers = new StringBuilder();
            foreach (string line in File.ReadAllLines(args[0], utf8))
            {
                int space = line.IndexOf(' ');
                string what = line.Substring(0, space), arg = line.Substring(space + 1);
                string answer;
                if (what == "grow") answer = Mapping.GrownSize(long.Parse(arg)).ToString();
                else if (what == "key") answer = WireType.Key(arg);
                else if (what == "snake") answer = WireType.SnakeCase(arg);
                else if (what == "runtime") answer = RuntimeDir(arg);
                else throw new ArgumentException("unknown question: " + line);
                answers.Append(line).Append('\t').Append(answer).Append('\n');
            }
            File.WriteAllText(args[1], answers.ToString(), utf8);
            return 0;
        }

        static readonly string[] RuntimeVariables = { "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "XDG_DATA_HOME", "HOME" };

        /// <summary>The runtime dir with only the variables <paramref name="assignments"/> names set ("A=x B=y").</summary>
        static string RuntimeDir(string assignments)
        {
            foreach (string name in RuntimeVariables) Environment.SetEnvironmentVariable(name, null);
            foreach (string pair in assignments.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = pair.IndexOf('=');
                Environment.SetEnvironmentVariable(pair.Substring(0, eq), pair.Substring(eq + 1));
            }
            return WorkFolder.JupyterRuntimeDir();
        }
    }
}
