package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(instanceCmd) }

// armScope holds --subscription and --resource-group, shared by the
// control-plane nouns (instance, policy, hub, certificate).
var armScope struct {
	subscription  string
	resourceGroup string
}

// addARMFlags adds the ARM scope flags to a noun command.
func addARMFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&armScope.subscription, "subscription", envOr("OPENDPS_SUBSCRIPTION", dpsclient.DefaultSubscription), "subscription of the instances (env OPENDPS_SUBSCRIPTION)")
	f.StringVar(&armScope.resourceGroup, "resource-group", envOr("OPENDPS_RESOURCE_GROUP", dpsclient.DefaultResourceGroup), "resource group of the instances (env OPENDPS_RESOURCE_GROUP)")
}

// controlClient returns a control API client for the resolved connection
// and ARM scope.
func controlClient() (*dpsclient.Control, error) {
	env, err := loadClientEnv()
	if err != nil {
		return nil, err
	}
	if env.ControlURL == "" {
		return nil, errors.New("no control API URL: pass --control-url or a --connection file")
	}
	if env.Token == "" {
		return nil, errors.New("no operator token: pass --token or a --connection file")
	}
	c := dpsclient.NewControl(env.ControlURL, env.Token, env.HTTP)
	c.Subscription, c.ResourceGroup = armScope.subscription, armScope.resourceGroup
	return c, nil
}

func instanceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Short: "Create, show, list and delete DPS instances"}
	addARMFlags(cmd)
	cmd.AddCommand(instanceCreateCmd(), instanceShowCmd(), instanceListCmd(), instanceDeleteCmd(), instanceKeysCmd(), instanceFailoverCmd())
	return cmd
}

func instanceCreateCmd() *cobra.Command {
	var region, policy string
	var residency bool
	cmd := &cobra.Command{
		Use:   "create NAME --region REGION",
		Short: "Create a DPS instance",
		Long: "Create a DPS instance in REGION. Its data is replicated to the region's pair for disaster\n" +
			"recovery, unless --data-residency is given (only where the region allows it).",
		Args: cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.ProvisioningService, error) {
			spec := dpsclient.InstanceSpec{Location: region, AllocationPolicy: policy}
			if residency {
				spec.EnableDataResidency = &residency
			}
			return c.CreateInstance(cmd.Context(), args[0], spec)
		}, printInstance),
	}
	cmd.Flags().StringVar(&region, "region", "", "region of the instance, e.g. westeurope (required)")
	cmd.Flags().BoolVar(&residency, "data-residency", false, "keep the data in the region: no disaster recovery")
	cmd.Flags().StringVar(&policy, "allocation-policy", "", "Hashed (default), GeoLatency or Static")
	cmd.MarkFlagRequired("region")
	return cmd
}

func printInstance(w io.Writer, s *dpsclient.ProvisioningService) {
	p := s.Properties
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", s.Name)
	fmt.Fprintf(tw, "id scope:\t%s\n", p.IDScope)
	fmt.Fprintf(tw, "region:\t%s\n", s.Location)
	fmt.Fprintf(tw, "secondary region:\t%s\n", orNone(p.SecondaryLocation))
	fmt.Fprintf(tw, "disaster recovery:\t%s\n", p.DisasterRecovery)
	if p.RegionRole != "" {
		fmt.Fprintf(tw, "region role:\t%s (in the region answering)\n", p.RegionRole)
	}
	fmt.Fprintf(tw, "allocation policy:\t%s\n", p.AllocationPolicy)
	fmt.Fprintf(tw, "service endpoint:\t%s\n", p.ServiceOperationsHostName)
	fmt.Fprintf(tw, "device endpoint:\t%s\n", p.DeviceProvisioningHostName)
	fmt.Fprintf(tw, "linked hubs:\t%d\n", len(p.IotHubs))
	fmt.Fprintf(tw, "policies:\t%d\n", len(p.AuthorizationPolicies))
	fmt.Fprintf(tw, "resource group:\t%s/%s\n", s.SubscriptionID, s.ResourceGroup)
	fmt.Fprintf(tw, "etag:\t%s\n", s.Etag)
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func instanceShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a DPS instance",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.ProvisioningService, error) {
			return c.GetInstance(cmd.Context(), args[0])
		}, printInstance),
	}
}

func instanceListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the DPS instances of the subscription (of the resource group with --resource-group)",
		Args:  cobra.NoArgs,
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, _ []string) ([]dpsclient.ProvisioningService, error) {
			return c.ListInstances(cmd.Context(), cmd.Flags().Changed("resource-group"))
		}, func(w io.Writer, list []dpsclient.ProvisioningService) {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID SCOPE\tREGION\tSECONDARY\tDR\tRESOURCE GROUP")
			for _, s := range list {
				p := s.Properties
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, p.IDScope, s.Location, orNone(p.SecondaryLocation), p.DisasterRecovery, s.ResourceGroup)
			}
			tw.Flush()
		}),
	}
}

func instanceDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a DPS instance and everything in it",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (done, error) {
			return done{"deleted", args[0], "deleted instance " + args[0]}, c.DeleteInstance(cmd.Context(), args[0], "")
		}, printDone),
	}
}

// policyKeys is a policy with its keys and service connection strings.
type policyKeys struct {
	dpsclient.AccessPolicy
	PrimaryConnectionString   string `json:"primaryConnectionString"`
	SecondaryConnectionString string `json:"secondaryConnectionString"`
}

func withConnectionStrings(host string, ps []dpsclient.AccessPolicy) []policyKeys {
	out := make([]policyKeys, 0, len(ps))
	for _, p := range ps {
		cs := "HostName=" + host + ";SharedAccessKeyName=" + p.KeyName + ";SharedAccessKey="
		out = append(out, policyKeys{AccessPolicy: p, PrimaryConnectionString: cs + p.PrimaryKey, SecondaryConnectionString: cs + p.SecondaryKey})
	}
	return out
}

func instanceKeysCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keys NAME",
		Short: "Show the shared access policies of an instance with their keys and connection strings",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) ([]policyKeys, error) {
			svc, err := c.GetInstance(cmd.Context(), args[0])
			if err != nil {
				return nil, err
			}
			keys, err := c.ListKeys(cmd.Context(), args[0])
			if err != nil {
				return nil, err
			}
			return withConnectionStrings(svc.Properties.ServiceOperationsHostName, keys), nil
		}, printPolicyKeys),
	}
}

func printPolicyKeys(w io.Writer, ps []policyKeys) {
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "policy:\t%s\n", p.KeyName)
		fmt.Fprintf(tw, "rights:\t%s\n", p.Rights)
		fmt.Fprintf(tw, "primary key:\t%s\n", p.PrimaryKey)
		fmt.Fprintf(tw, "secondary key:\t%s\n", p.SecondaryKey)
		fmt.Fprintf(tw, "primary connection string:\t%s\n", p.PrimaryConnectionString)
		fmt.Fprintf(tw, "secondary connection string:\t%s\n", p.SecondaryConnectionString)
		tw.Flush()
	}
}
